"""Sample inputs shared by the OpenStack unit tests: default settings, one instance's addresses and secrets."""

from __future__ import annotations

from provision.openstack.addresses import Addresses
from provision.openstack.secrets import Secrets
from provision.settings import Settings

S = Settings()
ADDRS = Addresses("10.77.0.5", "ec2-203-0-113-7.compute-1.amazonaws.com")
SEC = Secrets(
    admin_password="Adm1nPassw0rd",
    keystone_db="KsDb",
    glance_db="GlDb",
    cinder_db="CiDb",
    glance_service="GlSvc",
    cinder_service="CiSvc",
    rabbit="RbPw",
    erlang_cookie="COOKIE",
    libvirt_secret_uuid="5f0c4f8e-8a47-4c55-9d3e-6f2b8d6f1a01",
    nova_db="NvDb",
    placement_db="PlDb",
    neutron_db="NeDb",
    nova_service="NvSvc",
    placement_service="PlSvc",
    neutron_service="NeSvc",
    dashboard_key="DjangoKey",
)
