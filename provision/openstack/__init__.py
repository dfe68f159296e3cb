"""OpenStack on Ceph, one module per service, from the distribution's packages as system services.

* ``infra`` MariaDB and RabbitMQ; ``identity`` Keystone and the catalog; ``image`` Glance and the
  golden guest image; ``volume`` Cinder (the RBD backend) and the bootable volume; ``compute``
  Placement, Nova and libvirt; ``network`` Neutron; ``dashboard`` Horizon; ``server`` the demo server.
* Shared: ``ini`` (the ini format, headers, common sections), ``addresses``, ``secrets``, ``profile``
  (packages and units per distribution), ``uwsgi`` (the uWSGI-served APIs), ``api`` (the HTTP client).
* Across services: ``provisioning`` (the ordered steps), ``instance`` (the boot jobs: per-instance
  rotation, per-boot reconcile), ``checks`` (readiness), ``__main__`` (``python3 -m provision.openstack``).

Standard library only: the boot agent runs all of it on the instance.
"""
