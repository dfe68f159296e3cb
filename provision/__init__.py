"""Provisioning for ceph-openstack-ami: one package that configures a host through a Target.

The same code runs against a real EC2 builder over SSH, against the simulation's
container through the Docker SDK, and on the instance itself at boot (local).
"""
