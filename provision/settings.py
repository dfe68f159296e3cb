"""Settings: every default in one place, overridable from invoke.yaml and from flags.

``invoke.yaml`` overrides take the form::

    coa:
      instance_type: m5.xlarge
      region: eu-west-1
      ceph:
        osd_count: 2
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from .exceptions import ConfigError
from .paths import SETTINGS_PATH


@dataclass(frozen=True)
class CephSettings:
    """The single-node Ceph cluster."""

    cluster: str = "ceph"
    mon_id: str = "a"
    mgr_id: str = "x"
    osd_count: int = 1
    osd_size_gib: int = 10
    osd_memory_target_mib: int = 1024
    pools: tuple[str, ...] = ("volumes", "images")
    connect_timeout_s: int = 10


@dataclass(frozen=True)
class OpenStackSettings:
    """OpenStack on the instance: region, ports, worker counts, the golden guest, the guests' network and the demo server."""

    region: str = "RegionOne"
    keystone_port: int = 5000
    glance_port: int = 9292
    cinder_port: int = 8776
    keystone_processes: int = 1
    keystone_threads: int = 4
    glance_workers: int = 0  # 0: glance-api serves from its main process (no parent + worker pair)
    cinder_api_processes: int = 1
    cinder_api_threads: int = 4
    cinder_backend: str = "ceph"
    mariadb_buffer_pool_mib: int = 64
    guest_image_name: str = "cephdemo-guest"
    boot_volume_size_gib: int = 1
    api_timeout_s: float = 15.0
    start_timeout_s: int = 300
    # Compute, network and dashboard (issue 6): one small worker each by default.
    nova_port: int = 8774
    placement_port: int = 8778
    neutron_port: int = 9696
    novnc_port: int = 6080
    nova_api_processes: int = 2  # one thread each (eventlet-patched): two keep requests from queueing behind one slow call
    nova_api_threads: int = 1  # eventlet-patched: 1 thread per uWSGI process (openstack/uwsgi.RPC_HEARTBEAT_ENV)
    placement_processes: int = 1
    placement_threads: int = 2
    nova_workers: int = 1  # conductor and scheduler
    # One: with two (lazy-apps) uWSGI processes, one of them sometimes loads with a broken ORM
    # (every request it serves: "type object 'Port' has no attribute 'port_forwardings'", 500),
    # seen on an instance launched from the AMI; one process passed 6 relaunches and 3 reboots.
    neutron_api_workers: int = 1
    neutron_rpc_workers: int = 1
    dashboard_processes: int = 1
    dashboard_threads: int = 4
    #: "auto": kvm when /dev/kvm is usable at boot, qemu (TCG) otherwise; or "kvm" / "qemu".
    virt_type: str = "auto"
    #: The guests' flat provider network: a veth pair inside the instance. Neutron's agent puts
    #: ``provider_interface`` in the network's bridge; the instance holds the gateway address
    #: on ``provider_host_interface``, the other end.
    provider_interface: str = "coa-phys"
    provider_host_interface: str = "coa-gw"
    provider_physnet: str = "provider"
    provider_cidr: str = "10.99.0.0/24"
    provider_gateway: str = "10.99.0.1"
    provider_pool: tuple[str, ...] = ("10.99.0.100", "10.99.0.199")
    network_name: str = "cephdemo-net"
    flavor_name: str = "cephdemo.tiny"
    flavor_ram_mib: int = 256
    flavor_vcpus: int = 1
    server_name: str = "cephdemo-server"
    #: The Nova key pair the demo server is booted with: the EC2 instance's own public key.
    keypair_name: str = "cephdemo-key"


@dataclass(frozen=True)
class TlsSettings:
    """TLS on every public port: the certificate and the ports Apache serves it on.

    ``cert_file``/``key_file`` empty: the instance makes its own key and self-signed
    certificate at first boot (SANs: its public name, its private IPv4, the hostname), and
    a new certificate whenever those change. Both set: paths on the instance of the owner's
    certificate (PEM, chain after the leaf) and key, used as they are and never overwritten.

    The public ports follow TripleO's convention for the APIs (13000 + the last digits of
    the internal port); Apache proxies each to the service on 127.0.0.1.
    """

    cert_file: str = ""
    key_file: str = ""
    cert_days: int = 825
    #: A certificate of ours that expires within this many days is made anew at boot.
    renew_days: int = 30
    dashboard_port: int = 443
    #: Plain HTTP: only a redirect to the dashboard's HTTPS URL.
    redirect_port: int = 80
    keystone_port: int = 13000
    glance_port: int = 13292
    cinder_port: int = 13776
    nova_port: int = 13774
    placement_port: int = 13778
    neutron_port: int = 13696
    novnc_port: int = 13080


@dataclass(frozen=True)
class ClusterSettings:
    """Several instances of the AMI as one cloud: the join token and the replication a cluster gets.

    The first instance (the controller) bootstraps as a single node does; an instance launched
    with a join token in its user data joins it instead (``provision/cluster/``).
    """

    #: The controller's join service (HTTPS, its own certificate pinned by the token).
    join_port: int = 13443
    #: A join token is refused this many seconds after it was issued.
    token_ttl_s: int = 3600
    #: Monitors in all, the controller's included (nodes 2 and 3 add one each).
    max_monitors: int = 3
    #: From this many OSD hosts on, the pools keep ``replicated_size`` copies on distinct hosts.
    replicated_hosts: int = 3
    replicated_size: int = 3
    replicated_min_size: int = 2


@dataclass(frozen=True)
class Settings:
    """Project-wide defaults; the single source for instance type, region, names and sizes."""

    instance_type: str = "m1.xlarge"
    region: str = "us-east-1"
    hostname: str = "cephdemo"
    profile: str = "debian-12"
    login_user: str = "admin"
    volume_pool: str = "volumes"
    image_pool: str = "images"
    boot_volume_name: str = "cephdemo-boot"
    state_dir: str = "/var/lib/ceph-openstack-ami"
    #: Per-boot state (a tmpfs on the instance: empty at every boot).
    run_dir: str = "/run/ceph-openstack-ami"
    metadata_url: str = "http://169.254.169.254"
    metadata_allow_v1: bool = True
    metadata_retries: int = 3
    metadata_backoff_s: float = 0.5
    boot_metadata_attempts: int = 5
    boot_metadata_delay_s: float = 2.0
    ssh_port: int = 22
    ssh_connect_timeout_s: float = 10.0
    ssh_retries: int = 30
    ssh_retry_delay_s: float = 5.0
    wait_delay_s: float = 5.0
    wait_attempts: int = 120
    ceph: CephSettings = field(default_factory=CephSettings)
    openstack: OpenStackSettings = field(default_factory=OpenStackSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)

    def replace(self, **changes: Any) -> "Settings":
        """Return a copy with ``changes`` applied; ``None`` values are ignored (unset flags)."""
        return apply_overrides(self, {k: v for k, v in changes.items() if v is not None})


def apply_overrides(obj: Any, overrides: Mapping[str, Any]) -> Any:
    """Return a copy of the dataclass ``obj`` with nested ``overrides`` applied.

    Raises:
        ConfigError: an override names no setting, or has the wrong type.
    """
    known = {f.name: f for f in dataclasses.fields(obj)}
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        key = key.replace("-", "_")
        if key not in known:
            raise ConfigError(
                f"Unknown setting {key!r} for {type(obj).__name__}",
                hint=f"valid settings: {', '.join(sorted(known))}",
            )
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise ConfigError(f"Setting {key!r} must be a mapping, got {value!r}")
            changes[key] = apply_overrides(current, value)
        elif isinstance(current, tuple):
            changes[key] = tuple(value) if not isinstance(value, str) else tuple(v.strip() for v in value.split(","))
        elif isinstance(current, bool):
            changes[key] = _to_bool(key, value)
        elif isinstance(current, (int, float)):
            try:
                changes[key] = type(current)(value)
            except (TypeError, ValueError) as e:
                raise ConfigError(f"Setting {key!r} must be a number, got {value!r}") from e
        else:
            changes[key] = str(value)
    return dataclasses.replace(obj, **changes)


def _to_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"Setting {key!r} must be true or false, got {value!r}")


def load(config: Mapping[str, Any] | None = None, **flags: Any) -> Settings:
    """Build settings from defaults, then an invoke config mapping, then flags (highest)."""
    settings = apply_overrides(Settings(), dict(config or {}))
    return settings.replace(**flags)


def as_dict(settings: Settings) -> dict[str, Any]:
    """Settings as plain data (for ``ns.configure`` and for printing)."""
    return dataclasses.asdict(settings)


def load_installed(path: str = SETTINGS_PATH) -> Settings:
    """The settings provisioning wrote on this instance, or the defaults when the file is absent."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return Settings()
    return apply_overrides(Settings(), data)
