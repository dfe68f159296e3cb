"""Unit tests of provision/openstack/, one file per module (a package: tests/sim has a test_compute.py too)."""
