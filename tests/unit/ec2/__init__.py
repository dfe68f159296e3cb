"""Tests of provision/ec2/: one module per module of the package (fixtures in conftest, shared helpers in helpers)."""
