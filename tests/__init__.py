"""Tests of ceph-openstack-ami (a package, so test modules are named by their path: tests.unit.x, tests.sim.y)."""
