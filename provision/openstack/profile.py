"""What differs between distributions: the OpenStack packages and the units that run them.

:data:`PROFILES` by distribution name; provisioning records the one it used on the host
(:data:`PROFILE_NAME`), where the boot jobs read it back (:func:`host_profile`).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from ..exceptions import ConfigError
from ..paths import AGENT_UNITS, COMPUTE_API_UNITS, GUEST_NET_UNIT
from ..settings import Settings
from ..target import Target

#: The distribution profile provisioning used (read by the boot jobs), under ``state_dir``.
PROFILE_NAME = "openstack/profile"


@dataclass(frozen=True)
class OpenStackProfile:
    """Package names and service units of one distribution."""

    name: str
    packages: tuple[str, ...]
    #: Units of the OpenStack APIs and workers, in start order.
    keystone_unit: str
    glance_unit: str
    cinder_units: tuple[str, ...]
    database_unit: str = "mariadb.service"
    broker_unit: str = "rabbitmq-server.service"
    libvirt_unit: str = "libvirtd.service"
    #: Packages whose APIs run under the distribution's uWSGI init wrapper (tuned by /etc/default).
    uwsgi_packages: tuple[str, ...] = ()
    #: Units the packages enable that a one-host RBD cloud never uses (iSCSI/NVMe initiators,
    #: LIO target restore, disk health daemons, libvirt guest shutdown): disabled to save
    #: memory and boot time.
    unneeded_units: tuple[str, ...] = ()
    #: Placement, the Nova control plane and console proxy, the Neutron server.
    compute_api_units: tuple[str, ...] = ()
    #: nova-compute and Neutron's agents (after the guests' bridge).
    agent_units: tuple[str, ...] = ()
    placement_unit: str = "placement-api.service"
    dashboard_unit: str = "apache2.service"
    #: Ours, but not a boot job (the agent removes unknown coa-* units): the guests' network link.
    guest_net_unit: str = GUEST_NET_UNIT

    @property
    def service_units(self) -> tuple[str, ...]:
        """Every OpenStack API/worker unit."""
        return (self.keystone_unit, self.glance_unit, *self.cinder_units, *self.compute_api_units, *self.agent_units, self.dashboard_unit)

    @property
    def nova_units(self) -> tuple[str, ...]:
        """The units reading nova.conf."""
        return tuple(u for u in (*self.compute_api_units, *self.agent_units) if u.startswith("nova-"))

    @property
    def neutron_units(self) -> tuple[str, ...]:
        """The units reading neutron.conf."""
        return tuple(u for u in (*self.compute_api_units, *self.agent_units) if u.startswith("neutron-"))

    @property
    def all_units(self) -> tuple[str, ...]:
        """Infrastructure and OpenStack units, in start order."""
        return (self.database_unit, self.broker_unit, self.libvirt_unit, *self.service_units)


_COMMON_PACKAGES = (
    "mariadb-server",
    "python3-pymysql",
    "rabbitmq-server",
    "keystone",
    "glance-api",
    "cinder-api",
    "cinder-scheduler",
    "cinder-volume",
    "python3-openstackclient",
    "libvirt-daemon-system",
    "libvirt-clients",
    "python3-rbd",
    "ceph-common",
    "placement-api",
    "nova-api",
    "nova-conductor",
    "nova-scheduler",
    "nova-consoleproxy",
    # nova-compute-kvm, not -qemu: the latter pulls every qemu-system emulator, and libvirtd's
    # first start probes each (~45 s). virt_type follows /dev/kvm at boot (qemu without it).
    "nova-compute-kvm",
    "neutron-server",
    "neutron-linuxbridge-agent",
    "neutron-dhcp-agent",
    "openstack-dashboard-apache",
    # The boot job coa-tls makes this instance's key and certificate with it (provision/tls.py).
    "openssl",
    # nova-compute writes the demo server's config drive (its SSH key) with it (mkisofs_cmd).
    "genisoimage",
)


_UNNEEDED_COMPUTE_UNITS = (
    "nova-api-metadata.service",
    "nova-serialproxy.service",
    "nova-spicehtml5proxy.service",
    "haproxy.service",
    "apache-htcacheclean.service",
)


PROFILES: dict[str, OpenStackProfile] = {
    "debian-12": OpenStackProfile(
        "debian-12",
        _COMMON_PACKAGES,
        keystone_unit="keystone.service",
        glance_unit="glance-api.service",
        cinder_units=("cinder-api.service", "cinder-scheduler.service", "cinder-volume.service"),
        uwsgi_packages=("keystone", "cinder-api", "placement-api", "nova-api", "neutron-api"),
        compute_api_units=COMPUTE_API_UNITS,
        agent_units=AGENT_UNITS,
        unneeded_units=(
            *_UNNEEDED_COMPUTE_UNITS,
            "open-iscsi.service",
            "iscsid.socket",
            "rtslib-fb-targetctl.service",
            "nvmf-autoconnect.service",
            "nvmefc-boot-connections.service",
            "smartmontools.service",
            "libvirt-guests.service",
            "lvm2-monitor.service",
        ),
    ),
    # Ubuntu serves Keystone and cinder-api from Apache (mod_wsgi) instead of uWSGI. Untested
    # in the simulation so far (no Ubuntu base image could be pulled here).
    "ubuntu-24.04": OpenStackProfile(
        "ubuntu-24.04",
        _COMMON_PACKAGES,
        keystone_unit="apache2.service",
        glance_unit="glance-api.service",
        cinder_units=("cinder-scheduler.service", "cinder-volume.service"),
        compute_api_units=COMPUTE_API_UNITS,
        agent_units=AGENT_UNITS,
        unneeded_units=(*_UNNEEDED_COMPUTE_UNITS, "open-iscsi.service", "iscsid.socket", "libvirt-guests.service"),
    ),
}


def profile(name: str) -> OpenStackProfile:
    """The OpenStack profile of a distribution; ConfigError naming the valid ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"Unknown distribution profile {name!r}", hint=f"use one of: {', '.join(PROFILES)}") from None


def host_profile(target: Target, settings: Settings) -> OpenStackProfile:
    """The profile provisioning recorded on this host (the settings' otherwise)."""
    try:
        name = target.read(posixpath.join(settings.state_dir, PROFILE_NAME)).decode().strip()
    except FileNotFoundError:
        name = settings.profile
    return profile(name)
