"""Unit tests of provision/cluster/, one file per module."""
