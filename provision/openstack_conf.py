"""OpenStack configuration as pure functions: settings, secrets and addresses in, text or plans out.

Everything here is free of I/O and uses the standard library only: the boot agent
imports it on the instance under the distribution's ``/usr/bin/python3``.

* :class:`Secrets` — every password and key an instance owns (generated per instance).
* :class:`Addresses` — where the instance is: its private IPv4 and public host name.
* ``render_*`` — keystone.conf, glance-api.conf, cinder.conf, /root/openrc, the uWSGI
  inis, the libvirt secret XML, the MariaDB and RabbitMQ drop-ins.
* ``plan_*`` — what to change, given what is observed: database users, the Keystone
  catalog, the instance's bootable volume. Tested as tables.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import secrets as _random
import shlex
import string
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from .exceptions import ConfigError, ProvisionError
from .settings import Settings

HEADER = "# Managed by ceph-openstack-ami ({module}); rewritten at boot. Local edits are lost.\n"
MYSQL_SOCKET = "/run/mysqld/mysqld.sock"
OPENRC_PATH = "/root/openrc"
ADMIN_USER = "admin"
ADMIN_PROJECT = "admin"
SERVICE_PROJECT = "service"
ADMIN_ROLE = "admin"
SERVICE_ROLE = "service"
DOMAIN = "Default"
RABBIT_USER = "openstack"
LIBVIRT_SECRET_USAGE = "client.{user} secret"
INTERFACES = ("public", "internal", "admin")

_ALPHANUM = string.ascii_letters + string.digits


class OpenStackError(ProvisionError):
    """An OpenStack API or service did not do what was asked."""


# --- secrets -------------------------------------------------------------------------
def new_password(length: int = 32) -> str:
    """A random password of letters and digits (safe in URLs, ini files, SQL and shells)."""
    return "".join(_random.choice(_ALPHANUM) for _ in range(length))


def new_fernet_key() -> str:
    """A Fernet key as Keystone's key repositories hold it (urlsafe base64 of 32 random bytes)."""
    return base64.urlsafe_b64encode(_random.token_bytes(32)).decode()


@dataclass(frozen=True)
class Secrets:
    """Every password an instance owns. ``repr`` never shows a value."""

    admin_password: str = field(repr=False)
    keystone_db: str = field(repr=False)
    glance_db: str = field(repr=False)
    cinder_db: str = field(repr=False)
    glance_service: str = field(repr=False)
    cinder_service: str = field(repr=False)
    rabbit: str = field(repr=False)
    erlang_cookie: str = field(repr=False)
    libvirt_secret_uuid: str
    nova_db: str = field(repr=False)
    placement_db: str = field(repr=False)
    neutron_db: str = field(repr=False)
    nova_service: str = field(repr=False)
    placement_service: str = field(repr=False)
    neutron_service: str = field(repr=False)
    #: Django's SECRET_KEY of the dashboard (signs its session cookies).
    dashboard_key: str = field(repr=False)

    @classmethod
    def generate(cls) -> "Secrets":
        """A complete new set: nothing shared with any other instance or with the builder."""
        return cls(
            admin_password=new_password(),
            keystone_db=new_password(),
            glance_db=new_password(),
            cinder_db=new_password(),
            glance_service=new_password(),
            cinder_service=new_password(),
            rabbit=new_password(),
            erlang_cookie=new_password(32).upper(),
            libvirt_secret_uuid=str(uuid.uuid4()),
            nova_db=new_password(),
            placement_db=new_password(),
            neutron_db=new_password(),
            nova_service=new_password(),
            placement_service=new_password(),
            neutron_service=new_password(),
            dashboard_key=new_password(50),
        )

    def to_json(self) -> str:
        """Serialise for the root-only secrets file."""
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, complete: bool = False) -> "Secrets":
        """Parse the secrets file; ConfigError naming what is missing or malformed.

        ``complete``: generate the missing ones instead (a host provisioned before a service
        was added keeps every secret it has).
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"The OpenStack secrets file is not JSON ({e.msg})") from e
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if not isinstance(data.get(n), str) or not data.get(n)]
        if missing and not complete:
            raise ConfigError(f"The OpenStack secrets file lacks {', '.join(missing)}", hint="re-run provisioning")
        fresh = dataclasses.asdict(cls.generate()) if missing else {}
        return cls(**{n: (fresh[n] if n in missing else data[n]) for n in names})

    def differing(self, other: "Secrets") -> list[str]:
        """Names of the fields that differ (values never shown)."""
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(other, f.name)]


# --- where the instance is -----------------------------------------------------------
@dataclass(frozen=True)
class Addresses:
    """The instance's private IPv4 (internal/admin endpoints) and public host name (public endpoints)."""

    private_ip: str
    public_host: str

    @classmethod
    def from_info(cls, info: Any) -> "Addresses":
        """From an :class:`~provision.metadata.InstanceInfo`; the private IPv4 stands in for a missing public name."""
        private = getattr(info, "local_ipv4")
        return cls(private, getattr(info, "public_hostname", None) or private)


@dataclass(frozen=True)
class ServiceDef:
    """A catalog service and how its endpoint URL is built."""

    name: str
    type: str
    description: str
    port_setting: str
    path: str


SERVICES: tuple[ServiceDef, ...] = (
    ServiceDef("keystone", "identity", "OpenStack Identity", "keystone_port", "/v3"),
    ServiceDef("glance", "image", "OpenStack Image", "glance_port", ""),
    ServiceDef("cinderv3", "volumev3", "OpenStack Block Storage", "cinder_port", "/v3/%(project_id)s"),
    ServiceDef("nova", "compute", "OpenStack Compute", "nova_port", "/v2.1"),
    ServiceDef("placement", "placement", "OpenStack Placement", "placement_port", ""),
    ServiceDef("neutron", "network", "OpenStack Networking", "neutron_port", ""),
)

#: Service users: keystone user name -> the Secrets field holding its password.
SERVICE_USERS: tuple[tuple[str, str], ...] = (
    ("glance", "glance_service"),
    ("cinder", "cinder_service"),
    ("nova", "nova_service"),
    ("placement", "placement_service"),
    ("neutron", "neutron_service"),
)


def endpoint_url(settings: Settings, service: ServiceDef, host: str) -> str:
    """``http://HOST:PORT/PATH`` of ``service``."""
    port = getattr(settings.openstack, service.port_setting)
    return f"http://{host}:{port}{service.path}"


def desired_endpoints(settings: Settings, addrs: Addresses) -> dict[tuple[str, str], str]:
    """(service type, interface) -> URL: public on the public name, internal and admin on the private IPv4."""
    out: dict[tuple[str, str], str] = {}
    for svc in SERVICES:
        for iface in INTERFACES:
            host = addrs.public_host if iface == "public" else addrs.private_ip
            out[(svc.type, iface)] = endpoint_url(settings, svc, host)
    return out


def auth_url(settings: Settings, host: str) -> str:
    """Keystone's v3 URL on ``host``."""
    return f"http://{host}:{settings.openstack.keystone_port}/v3"


def dashboard_url(addrs: Addresses) -> str:
    """The URL the owner is told about on the console."""
    return f"http://{addrs.public_host}/"


def console_line(addrs: Addresses, admin_password: str) -> str:
    """The one line printed to the console log on a new instance (the only place a secret is shown)."""
    return f"ceph-openstack-ami: admin password for {dashboard_url(addrs)}: {admin_password}"


# --- ini files -----------------------------------------------------------------------
Section = tuple[str, Sequence[tuple[str, object]]]


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def render_ini(header: str, sections: Iterable[Section]) -> str:
    """An ini file: the header comment, then ``[section]`` blocks of ``key = value`` lines."""
    out = [header.rstrip("\n"), ""]
    for name, items in sections:
        out.append(f"[{name}]")
        for key, value in items:
            text = _value(value)
            if "\n" in text:
                raise ConfigError(f"Value of {name}.{key} spans lines")
            out.append(f"{key} = {text}")
        out.append("")
    return "\n".join(out)


def parse_ini(text: str) -> dict[str, dict[str, str]]:
    """The ``[section] key = value`` pairs of an ini text (comments ignored, last value wins)."""
    data: dict[str, dict[str, str]] = {}
    section = "DEFAULT"
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            data.setdefault(section, {})
            continue
        key, sep, value = line.partition("=")
        if sep:
            data.setdefault(section, {})[key.strip()] = value.strip()
    return data


def mysql_url(user: str, password: str, database: str) -> str:
    """SQLAlchemy URL through the local MariaDB socket (the database listens on no network)."""
    return f"mysql+pymysql://{user}:{password}@localhost/{database}?unix_socket={MYSQL_SOCKET}&charset=utf8mb4"


def _database(section: str, user: str, password: str, database: str) -> Section:
    """A ``[database]``-style section: the local MariaDB socket, a small connection pool."""
    return (section, [("connection", mysql_url(user, password, database)), ("max_pool_size", 5), ("max_overflow", 10)])


def rabbit_url(password: str) -> str:
    """oslo.messaging transport URL of the local RabbitMQ."""
    return f"rabbit://{RABBIT_USER}:{password}@127.0.0.1:5672/"


def _authtoken(settings: Settings, addrs: Addresses, user: str, password: str) -> Section:
    return (
        "keystone_authtoken",
        [
            ("www_authenticate_uri", f"http://{addrs.public_host}:{settings.openstack.keystone_port}"),
            ("auth_url", f"http://{addrs.private_ip}:{settings.openstack.keystone_port}"),
            ("auth_type", "password"),
            ("project_domain_name", DOMAIN),
            ("user_domain_name", DOMAIN),
            ("project_name", SERVICE_PROJECT),
            ("username", user),
            ("password", password),
            ("region_name", settings.openstack.region),
            ("http_connect_timeout", 10),
            ("http_request_max_retries", 3),
            # A service token must carry the "service" role to count (Cinder lets only Nova,
            # proven by its service token, delete the attachment of a volume Nova uses).
            ("service_token_roles", SERVICE_ROLE),
            ("service_token_roles_required", True),
        ],
    )


def render_keystone_conf(settings: Settings, sec: Secrets) -> str:
    """keystone.conf: SQL on MariaDB, Fernet tokens, the key repositories."""
    return render_ini(
        HEADER.format(module="provision/openstack_conf.py"),
        [
            ("DEFAULT", [("log_dir", "/var/log/keystone"), ("log_file", "keystone.log")]),
            _database("database", "keystone", sec.keystone_db, "keystone"),
            ("token", [("provider", "fernet"), ("expiration", 3600)]),
            # bcrypt reads 72 bytes; the default 4096 makes Keystone warn at every login.
            ("identity", [("max_password_length", 72)]),
            ("fernet_tokens", [("key_repository", "/etc/keystone/fernet-keys/"), ("max_active_keys", 3)]),
            ("fernet_receipts", [("key_repository", "/etc/keystone/fernet-keys/")]),
            ("credential", [("key_repository", "/etc/keystone/credential-keys/")]),
            ("oslo_policy", [("policy_dirs", "/etc/keystone/policy.d")]),
        ],
    )


def render_glance_api_conf(settings: Settings, sec: Secrets, addrs: Addresses) -> str:
    """glance-api.conf: images in the RBD pool as client.images, direct URLs shown so Cinder can clone."""
    o = settings.openstack
    return render_ini(
        HEADER.format(module="provision/openstack_conf.py"),
        [
            (
                "DEFAULT",
                [
                    ("bind_host", "0.0.0.0"),
                    ("bind_port", o.glance_port),
                    ("workers", o.glance_workers),
                    ("show_image_direct_url", True),
                    ("enabled_backends", "rbd:rbd"),
                    ("public_endpoint", f"http://{addrs.public_host}:{o.glance_port}"),
                ],
            ),
            _database("database", "glance", sec.glance_db, "glance"),
            ("glance_store", [("default_backend", "rbd")]),
            (
                "rbd",
                [
                    ("rbd_store_pool", settings.image_pool),
                    ("rbd_store_user", settings.image_pool),
                    ("rbd_store_ceph_conf", f"/etc/ceph/{settings.ceph.cluster}.conf"),
                    ("rbd_store_chunk_size", 8),
                    ("rados_connect_timeout", 10),
                    ("store_description", "Ceph RBD pool " + settings.image_pool),
                ],
            ),
            ("os_glance_staging_store", [("filesystem_store_datadir", "/var/lib/glance/staging")]),
            ("os_glance_tasks_store", [("filesystem_store_datadir", "/var/lib/glance/tasks_work_dir")]),
            _authtoken(settings, addrs, "glance", sec.glance_service),
            ("paste_deploy", [("flavor", "keystone")]),
            ("oslo_messaging_notifications", [("driver", "noop")]),
            ("oslo_concurrency", [("lock_path", "/var/lock/glance")]),
        ],
    )


def render_cinder_conf(settings: Settings, sec: Secrets, addrs: Addresses) -> str:
    """cinder.conf: one RBD backend (pool volumes as client.volumes, the libvirt secret's uuid)."""
    o = settings.openstack
    backend = o.cinder_backend
    return render_ini(
        HEADER.format(module="provision/openstack_conf.py"),
        [
            (
                "DEFAULT",
                [
                    # A fixed service host: volumes stay manageable on a relaunched instance.
                    ("host", settings.hostname),
                    ("my_ip", addrs.private_ip),
                    ("auth_strategy", "keystone"),
                    ("transport_url", rabbit_url(sec.rabbit)),
                    ("enabled_backends", backend),
                    ("default_volume_type", "__DEFAULT__"),
                    ("glance_api_servers", f"http://{addrs.private_ip}:{o.glance_port}"),
                    ("state_path", "/var/lib/cinder"),
                    ("log_dir", "/var/log/cinder"),
                    # Report capabilities at once after a start, then often: otherwise "No valid
                    # backend" for 60-75 s (measured; openstack-notes.md).
                    ("periodic_fuzzy_delay", 0),
                    ("periodic_interval", 15),
                    ("report_interval", 10),
                ],
            ),
            _database("database", "cinder", sec.cinder_db, "cinder"),
            _authtoken(settings, addrs, "cinder", sec.cinder_service),
            ("oslo_concurrency", [("lock_path", "/var/lock/cinder")]),
            ("oslo_messaging_notifications", [("driver", "noop")]),
            (
                backend,
                [
                    ("volume_driver", "cinder.volume.drivers.rbd.RBDDriver"),
                    ("volume_backend_name", backend),
                    ("rbd_pool", settings.volume_pool),
                    ("rbd_user", settings.volume_pool),
                    ("rbd_ceph_conf", f"/etc/ceph/{settings.ceph.cluster}.conf"),
                    ("rbd_secret_uuid", sec.libvirt_secret_uuid),
                    ("rbd_flatten_volume_from_snapshot", False),
                    ("rbd_max_clone_depth", 5),
                    ("rbd_store_chunk_size", 4),
                    ("rados_connect_timeout", 10),
                    ("report_discard_supported", True),
                ],
            ),
        ],
    )


def _service_auth(section: str, settings: Settings, addrs: Addresses, user: str, password: str, extra: Sequence[tuple[str, object]] = ()) -> Section:
    """A keystoneauth password section (``[placement]``, ``[neutron]``, ``[nova]`` ...) for service ``user``."""
    return (
        section,
        [
            ("auth_url", f"http://{addrs.private_ip}:{settings.openstack.keystone_port}/v3"),
            ("auth_type", "password"),
            ("project_domain_name", DOMAIN),
            ("user_domain_name", DOMAIN),
            ("project_name", SERVICE_PROJECT),
            ("username", user),
            ("password", password),
            ("region_name", settings.openstack.region),
            ("valid_interfaces", "internal"),
            *extra,
        ],
    )


def virt_type(setting: str, kvm_usable: bool) -> str:
    """libvirt's ``virt_type``: the setting, or for ``auto`` kvm when /dev/kvm is usable, qemu (TCG) otherwise."""
    if setting not in ("auto", "kvm", "qemu"):
        raise ConfigError(f"virt_type must be auto, kvm or qemu, not {setting!r}")
    if setting == "auto":
        return "kvm" if kvm_usable else "qemu"
    return setting


def novnc_url(settings: Settings, addrs: Addresses) -> str:
    """The noVNC URL the dashboard's console opens (on the public name: the owner's browser follows it)."""
    return f"http://{addrs.public_host}:{settings.openstack.novnc_port}/vnc_auto.html"


def render_nova_conf(settings: Settings, sec: Secrets, addrs: Addresses, kvm_usable: bool = False) -> str:
    """nova.conf: API, conductor, scheduler and compute on one host; libvirt with RBD volumes; noVNC on the public name."""
    o = settings.openstack
    return render_ini(
        HEADER.format(module="provision/openstack_conf.py"),
        [
            (
                "DEFAULT",
                [
                    # A fixed host name: the compute service and its server survive a relaunch.
                    ("host", settings.hostname),
                    ("my_ip", addrs.private_ip),
                    ("transport_url", rabbit_url(sec.rabbit)),
                    ("enabled_apis", "osapi_compute"),
                    ("osapi_compute_workers", o.nova_api_processes),
                    ("state_path", "/var/lib/nova"),
                    ("log_dir", "/var/log/nova"),
                    # A reboot of the instance brings its guests back (a same-address reboot keeps
                    # their volume connections valid; a new instance replaces its demo server).
                    ("resume_guests_state_on_host_boot", True),
                    ("instance_usage_audit", False),
                    ("heal_instance_info_cache_interval", 600),
                    ("cpu_allocation_ratio", 4.0),
                    ("ram_allocation_ratio", 1.5),
                ],
            ),
            ("api", [("auth_strategy", "keystone")]),
            _database("api_database", "nova", sec.nova_db, "nova_api"),
            _database("database", "nova", sec.nova_db, "nova"),
            _authtoken(settings, addrs, "nova", sec.nova_service),
            _service_auth("service_user", settings, addrs, "nova", sec.nova_service, [("send_service_user_token", True)]),
            _service_auth("placement", settings, addrs, "placement", sec.placement_service),
            _service_auth("neutron", settings, addrs, "neutron", sec.neutron_service, [("service_metadata_proxy", False)]),
            ("glance", [("valid_interfaces", "internal"), ("region_name", o.region)]),
            # Credentials too: nova-compute deletes volume attachments without a user's token
            # when it cleans up (a deleted server of an earlier instance, for one).
            _service_auth("cinder", settings, addrs, "nova", sec.nova_service,
                          [("catalog_info", "volumev3:cinderv3:internalURL"), ("os_region_name", o.region)]),
            ("conductor", [("workers", o.nova_workers)]),
            ("scheduler", [("workers", o.nova_workers), ("discover_hosts_in_cells_interval", -1)]),
            (
                "libvirt",
                [
                    ("virt_type", virt_type(o.virt_type, kvm_usable)),
                    ("cpu_mode", "none" if virt_type(o.virt_type, kvm_usable) == "qemu" else "host-model"),
                    ("rbd_user", settings.volume_pool),
                    ("rbd_secret_uuid", sec.libvirt_secret_uuid),
                    ("live_migration_scheme", "ssh"),
                ],
            ),
            (
                "vnc",
                [
                    ("enabled", True),
                    ("server_listen", addrs.private_ip),
                    ("server_proxyclient_address", addrs.private_ip),
                    ("novncproxy_host", "0.0.0.0"),
                    ("novncproxy_port", o.novnc_port),
                    ("novncproxy_base_url", novnc_url(settings, addrs)),
                ],
            ),
            ("oslo_concurrency", [("lock_path", "/var/lib/nova/tmp")]),
            ("oslo_messaging_notifications", [("driver", "noop")]),
            ("os_vif_linux_bridge", [("use_ipv6", False)]),
            ("wsgi", [("api_paste_config", "/etc/nova/api-paste.ini")]),
        ],
    )


def render_placement_conf(settings: Settings, sec: Secrets, addrs: Addresses) -> str:
    """placement.conf: its database and Keystone authentication."""
    return render_ini(
        HEADER.format(module="provision/openstack_conf.py"),
        [
            ("DEFAULT", [("log_dir", "/var/log/placement")]),
            ("api", [("auth_strategy", "keystone")]),
            _database("placement_database", "placement", sec.placement_db, "placement"),
            _authtoken(settings, addrs, "placement", sec.placement_service),
        ],
    )


def render_neutron_conf(settings: Settings, sec: Secrets, addrs: Addresses) -> str:
    """neutron.conf: ML2, no service plugins (no routers: the guests' network is flat), Nova told of port events."""
    o = settings.openstack
    return render_ini(
        HEADER.format(module="provision/openstack_conf.py"),
        [
            (
                "DEFAULT",
                [
                    ("bind_host", "0.0.0.0"),
                    ("bind_port", o.neutron_port),
                    ("core_plugin", "ml2"),
                    ("service_plugins", ""),
                    ("auth_strategy", "keystone"),
                    ("transport_url", rabbit_url(sec.rabbit)),
                    ("notify_nova_on_port_status_changes", True),
                    ("notify_nova_on_port_data_changes", True),
                    ("api_workers", o.neutron_api_workers),
                    ("rpc_workers", o.neutron_rpc_workers),
                    ("rpc_state_report_workers", 1),
                    ("dhcp_agents_per_network", 1),
                    ("host", settings.hostname),
                    ("state_path", "/var/lib/neutron"),
                    ("log_dir", "/var/log/neutron"),
                ],
            ),
            _database("database", "neutron", sec.neutron_db, "neutron"),
            _authtoken(settings, addrs, "neutron", sec.neutron_service),
            _service_auth("nova", settings, addrs, "nova", sec.nova_service),
            ("oslo_concurrency", [("lock_path", "/var/lib/neutron/tmp")]),
            ("oslo_messaging_notifications", [("driver", "noop")]),
            ("agent", [("root_helper", "sudo neutron-rootwrap /etc/neutron/rootwrap.conf"), ("report_interval", 10)]),
            # Zed marks the linuxbridge mechanism "experimental" (its maintainers moved to OVN);
            # it is still the smallest L2 for one host: no OVS database, no controller.
            ("experimental", [("linuxbridge", True)]),
        ],
    )


def render_ml2_conf(settings: Settings) -> str:
    """ml2_conf.ini: flat provider networks only, on the linuxbridge mechanism."""
    o = settings.openstack
    return render_ini(
        HEADER.format(module="provision/openstack_conf.py"),
        [
            ("ml2", [("type_drivers", "flat"), ("tenant_network_types", ""), ("mechanism_drivers", "linuxbridge"), ("extension_drivers", "port_security")]),
            ("ml2_type_flat", [("flat_networks", o.provider_physnet)]),
        ],
    )


def render_linuxbridge_agent_ini(settings: Settings) -> str:
    """linuxbridge_agent.ini: the provider network is the instance's own bridge; no overlay.

    Security groups are not enforced on the guests' ports: the bridge reaches nothing but the
    instance itself (no uplink, no forwarding), and enforcing them would need the host's
    ``br_netfilter`` module, which an instance may not be able to load.
    """
    o = settings.openstack
    return render_ini(
        HEADER.format(module="provision/openstack_conf.py"),
        [
            # An interface mapping, not a bridge mapping: Nova plugs guests into the bridge the
            # agent names after the network (brq...), and only an interface mapping puts the
            # provider side into that same bridge.
            ("linux_bridge", [("physical_interface_mappings", f"{o.provider_physnet}:{o.provider_interface}")]),
            ("vxlan", [("enable_vxlan", False)]),
            ("securitygroup", [("enable_security_group", False), ("firewall_driver", "noop")]),
            ("agent", [("polling_interval", 2)]),
        ],
    )


def render_dhcp_agent_ini(settings: Settings) -> str:
    """dhcp_agent.ini: dnsmasq in a network namespace, plugged into the bridge by the linuxbridge driver."""
    return render_ini(
        HEADER.format(module="provision/openstack_conf.py"),
        [
            (
                "DEFAULT",
                [
                    ("interface_driver", "linuxbridge"),
                    ("dhcp_driver", "neutron.agent.linux.dhcp.Dnsmasq"),
                    ("enable_isolated_metadata", False),
                    ("force_metadata", False),
                    ("num_sync_threads", 1),
                ],
            )
        ],
    )


def render_guest_net_unit(settings: Settings) -> str:
    """The unit that makes the guests' link (a veth pair, the instance's address on its end), before Neutron's agents."""
    o = settings.openstack
    prefix = o.provider_cidr.split("/", 1)[1]
    phys, host, addr = o.provider_interface, o.provider_host_interface, f"{o.provider_gateway}/{prefix}"
    return "\n".join([
        "# Managed by ceph-openstack-ami (provision/openstack_conf.py).",
        "[Unit]",
        f"Description=ceph-openstack-ami: the guests' network link ({host} {addr} <-> {phys}, Neutron's provider interface)",
        "Before=neutron-linuxbridge-agent.service neutron-dhcp-agent.service nova-compute.service",
        "After=network-pre.target",
        "",
        "[Service]",
        "Type=oneshot",
        "RemainAfterExit=yes",
        f"ExecStart=/bin/sh -c 'ip link show {host} >/dev/null 2>&1 || ip link add {host} type veth peer name {phys}'",
        f"ExecStart=/bin/sh -c 'ip -4 addr show dev {host} | grep -q \" {addr} \" || ip addr add {addr} dev {host}'",
        f"ExecStart=/bin/sh -c 'ip link set {phys} up && ip link set {host} up'",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])


def render_openrc(settings: Settings, sec: Secrets, addrs: Addresses) -> str:
    """/root/openrc: the admin credentials of this instance (mode 0600)."""
    env = [
        ("OS_AUTH_URL", auth_url(settings, addrs.public_host)),
        ("OS_IDENTITY_API_VERSION", "3"),
        ("OS_USERNAME", ADMIN_USER),
        ("OS_PASSWORD", sec.admin_password),
        ("OS_PROJECT_NAME", ADMIN_PROJECT),
        ("OS_USER_DOMAIN_NAME", DOMAIN),
        ("OS_PROJECT_DOMAIN_NAME", DOMAIN),
        ("OS_REGION_NAME", settings.openstack.region),
        ("OS_INTERFACE", "public"),
        ("OS_VOLUME_API_VERSION", "3"),
    ]
    lines = [
        "# Admin credentials of this instance; made at its first boot by ceph-openstack-ami.",
        "# Use: . /root/openrc && openstack token issue",
    ]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env]
    return "\n".join(lines) + "\n"


def parse_openrc(text: str) -> dict[str, str]:
    """The ``export NAME=VALUE`` assignments of an openrc."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("export ") and "=" in line:
            name, _, value = line[len("export "):].partition("=")
            parts = shlex.split(value) if value else [""]
            out[name.strip()] = parts[0] if parts else ""
    return out


@dataclass(frozen=True)
class UwsgiApp:
    """A WSGI API served by uWSGI under the distribution's init wrapper."""

    name: str
    wsgi_file: str
    log: str
    chdir: str
    port: int
    processes: int
    threads: int
    upload: bool = False
    #: Lines the application needs beyond the common ones (neutron-api's paste pipeline).
    extra: tuple[tuple[str, object], ...] = ()
    #: The name the init wrapper reads ``/etc/default/NAME`` under, when not the package's.
    default_name: str = ""
    #: The application talks to RabbitMQ (oslo.messaging RPC): see :data:`RPC_HEARTBEAT_ENV`.
    rpc: bool = False


#: oslo.messaging sends RabbitMQ heartbeats from a green thread that only runs while the
#: eventlet-patched process yields; a uWSGI worker idles in native code between requests, so
#: RabbitMQ dropped nova-api's and neutron-api's connections ("missed heartbeats from client,
#: timeout: 60s" in its log) and an RPC call answered on a dropped reply queue ended in a
#: MessagingTimeout (seen as `openstack console url show` failing after 60 s). oslo.messaging's
#: documented remedy for WSGI services is ``[oslo_messaging_rabbit] heartbeat_in_pthread``; it is
#: set for the uWSGI apps only (as oslo.config's environment source), never for the daemons that
#: share their configuration files.
RPC_HEARTBEAT_ENV = "OS_OSLO_MESSAGING_RABBIT__HEARTBEAT_IN_PTHREAD=true"


def uwsgi_apps(settings: Settings) -> dict[str, UwsgiApp]:
    """The uWSGI-served APIs by package name: Keystone, cinder-api, placement-api, nova-api, neutron-api."""
    o = settings.openstack
    return {
        "keystone": UwsgiApp("keystone-api", "/usr/bin/keystone-wsgi-public", "/var/log/keystone/keystone.log",
                             "/var/lib/keystone", o.keystone_port, o.keystone_processes, o.keystone_threads),
        "cinder-api": UwsgiApp("cinder-api", "/usr/bin/cinder-wsgi", "/var/log/cinder/cinder-api.log",
                               "/var/lib/cinder", o.cinder_port, o.cinder_api_processes, o.cinder_api_threads, upload=True, rpc=True),
        "placement-api": UwsgiApp("placement-api", "/usr/bin/placement-api", "/var/log/placement/placement-api.log",
                                  "/var/lib/placement", o.placement_port, o.placement_processes, o.placement_threads),
        "nova-api": UwsgiApp("nova-api", "/usr/bin/nova-api-wsgi", "/var/log/nova/nova-api.log",
                             "/var/lib/nova", o.nova_port, o.nova_api_processes, o.nova_api_threads, rpc=True),
        "neutron-api": UwsgiApp("neutron-api", "/usr/bin/neutron-api", "/var/log/neutron/neutron-api.log",
                                "/var/lib/neutron", o.neutron_port, o.neutron_api_workers, 4,
                                extra=(("paste", "config:/etc/neutron/api-paste.ini"),), default_name="neutron-server", rpc=True),
    }


def render_uwsgi_ini(app: UwsgiApp) -> str:
    """A uWSGI ini: the python3 plugin only (the AppArmor plugin fails in containers), few processes."""
    items: list[tuple[str, object]] = [
        ("plugins", "python3"),
        ("http-socket", f"0.0.0.0:{app.port}"),
        ("wsgi-file", app.wsgi_file),
        ("name", app.name),
        ("master", True),
        ("processes", app.processes),
        ("threads", app.threads),
        ("enable-threads", True),
        ("lazy-apps", True),
        ("thunder-lock", True),
        ("listen", 100),
        ("buffer-size", 65535),
        ("die-on-term", True),
        ("no-orphans", True),
        ("paste-logger", True),
        ("logto", app.log),
        ("chdir", app.chdir),
        ("worker-reload-mercy", 10),
        ("reload-mercy", 10),
    ]
    # uWSGI's http-socket does not keep connections alive: say so, or clients that reuse a
    # connection get "connection reset by peer" (seen with the openstack CLI).
    items.append(("add-header", "Connection: close"))
    if app.rpc:
        items.append(("env", RPC_HEARTBEAT_ENV))
    if app.upload:
        items += [("http-raw-body", True), ("socket-timeout", 10), ("wsgi-manage-chunked-input", True)]
    items += list(app.extra)
    return render_ini("; Managed by ceph-openstack-ami (provision/openstack_conf.py).", [("uwsgi", items)])


def uwsgi_ini_path(package: str) -> str:
    """Where our uWSGI ini for ``package`` lives (next to the package's own, which is left alone)."""
    project = package.split("-")[0]
    return f"/etc/{project}/{package}-coa-uwsgi.ini"


def render_default_file(package: str) -> str:
    """/etc/default/NAME: the init wrapper reads it last; it points uWSGI at our ini only."""
    return (
        "# Managed by ceph-openstack-ami (provision/openstack_conf.py).\n"
        "# The init wrapper sources this file last: these arguments replace the packaged ones\n"
        "# (8 processes x 32 threads, the AppArmor plugin).\n"
        f'DAEMON_ARGS="--ini {uwsgi_ini_path(package)}"\n'
    )


def render_mariadb_cnf(settings: Settings) -> str:
    """MariaDB drop-in: loopback only, small buffers (the services use the local socket)."""
    return render_ini(
        "# Managed by ceph-openstack-ami (provision/openstack_conf.py).",
        [
            (
                "mysqld",
                [
                    ("bind-address", "127.0.0.1"),
                    ("skip-name-resolve", "ON"),
                    ("innodb_buffer_pool_size", f"{settings.openstack.mariadb_buffer_pool_mib}M"),
                    ("performance_schema", "OFF"),
                    ("max_connections", 200),
                ],
            )
        ],
    )


def render_rabbitmq_env() -> str:
    """rabbitmq-env.conf: a node name that does not follow the host name; loopback listeners only."""
    return (
        "# Managed by ceph-openstack-ami (provision/openstack_conf.py).\n"
        "# rabbit@localhost: the node (and its database directory) keep their name on any host name.\n"
        "NODENAME=rabbit@localhost\n"
        "NODE_IP_ADDRESS=127.0.0.1\n"
        'SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"\n'
    )


def render_libvirt_secret_xml(secret_uuid: str, user: str) -> str:
    """The libvirt secret that holds ``client.USER``'s cephx key (for Nova's RBD attachments)."""
    uuid.UUID(secret_uuid)  # raises ValueError on garbage
    return (
        "<secret ephemeral='no' private='no'>\n"
        f"  <uuid>{secret_uuid}</uuid>\n"
        "  <usage type='ceph'>\n"
        f"    <name>{LIBVIRT_SECRET_USAGE.format(user=user)}</name>\n"
        "  </usage>\n"
        "</secret>\n"
    )


def parse_virsh_secret_list(text: str) -> list[tuple[str, str]]:
    """(uuid, usage) rows of ``virsh secret-list``."""
    rows = []
    for line in text.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2:
            try:
                uuid.UUID(parts[0])
            except ValueError:
                continue
            rows.append((parts[0], parts[1].strip()))
    return rows


def keyring_key(text: str) -> str:
    """The ``key = ...`` value of a Ceph keyring."""
    for line in text.splitlines():
        k, sep, v = line.strip().partition("=")
        if sep and k.strip() == "key":
            return v.strip()
    raise ProvisionError("The keyring has no `key =` line")


# --- MariaDB -------------------------------------------------------------------------
#: (database, its user, the Secrets field holding the user's password). Nova's three databases share one user.
DATABASES: tuple[tuple[str, str, str], ...] = (
    ("keystone", "keystone", "keystone_db"),
    ("glance", "glance", "glance_db"),
    ("cinder", "cinder", "cinder_db"),
    ("placement", "placement", "placement_db"),
    ("nova_api", "nova", "nova_db"),
    ("nova", "nova", "nova_db"),
    ("nova_cell0", "nova", "nova_db"),
    ("neutron", "neutron", "neutron_db"),
)


def sql_string(value: str) -> str:
    """A MariaDB single-quoted string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sql_ident(name: str) -> str:
    """A backquoted identifier (letters, digits and underscores only)."""
    if not name or not all(c.isalnum() or c == "_" for c in name):
        raise ConfigError(f"Invalid SQL identifier {name!r}")
    return f"`{name}`"


def mysql_native_hash(password: str) -> str:
    """The ``mysql_native_password`` hash MariaDB stores (``*`` + upper hex SHA1(SHA1(pw)))."""
    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()


#: Gathers what :func:`plan_database` needs, as tab-separated rows (run as root on the socket).
OBSERVE_DATABASE_SQL = (
    "SELECT 'db', SCHEMA_NAME, '' FROM information_schema.SCHEMATA;\n"
    "SELECT 'user', User, Password FROM mysql.user WHERE Host = 'localhost';\n"
    "SELECT 'grant', Db, User FROM mysql.db WHERE Host = 'localhost';\n"
)


@dataclass(frozen=True)
class DbObserved:
    """Databases, local users' password hashes and database grants, as MariaDB reports them."""

    databases: frozenset[str]
    users: Mapping[str, str]
    grants: frozenset[tuple[str, str]]


def parse_database_observation(text: str) -> DbObserved:
    """Parse the ``mysql -N -B`` output of :data:`OBSERVE_DATABASE_SQL`."""
    dbs: set[str] = set()
    users: dict[str, str] = {}
    grants: set[tuple[str, str]] = set()
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            parts += [""] * (3 - len(parts))
        kind, a, b = parts[0], parts[1], parts[2]
        if kind == "db":
            dbs.add(a)
        elif kind == "user":
            users[a] = b
        elif kind == "grant":
            grants.add((a.replace("\\_", "_"), b))
    return DbObserved(frozenset(dbs), users, frozenset(grants))


def plan_database(observed: DbObserved, sec: Secrets) -> tuple[list[str], list[str]]:
    """SQL statements that make the databases, users, passwords and grants match ``sec``.

    Returns:
        (statements, what): ``what`` names each change without any secret; both empty when
        nothing differs.
    """
    sql: list[str] = []
    what: list[str] = []
    users_done: set[str] = set()
    for db, name, attr in DATABASES:
        password = getattr(sec, attr)
        user = f"{sql_string(name)}@'localhost'"
        if db not in observed.databases:
            sql.append(f"CREATE DATABASE {sql_ident(db)} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;")
            what.append(f"database {db}")
        if name not in users_done:
            users_done.add(name)
            if name not in observed.users:
                sql.append(f"CREATE USER {user} IDENTIFIED BY {sql_string(password)};")
                what.append(f"user {name}")
            elif observed.users[name] != mysql_native_hash(password):
                sql.append(f"ALTER USER {user} IDENTIFIED BY {sql_string(password)};")
                what.append(f"password of {name}")
        if (db, name) not in observed.grants:
            sql.append(f"GRANT ALL PRIVILEGES ON {sql_ident(db)}.* TO {user};")
            what.append(f"grant on {db} to {name}")
    return sql, what


# --- RabbitMQ ------------------------------------------------------------------------
def rabbit_password_hash(password: str, salt: bytes) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + sha256(salt + password))."""
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def rabbit_password_matches(stored: str, password: str) -> bool:
    """True when a stored sha256 RabbitMQ hash is of ``password``."""
    try:
        raw = base64.b64decode(stored, validate=True)
    except (ValueError, TypeError):
        return False
    return len(raw) == 36 and rabbit_password_hash(password, raw[:4]) == stored


def plan_rabbit(definitions: Mapping[str, Any], password: str) -> list[str]:
    """What to do so user ``openstack`` (password, all permissions on ``/``) is the only user.

    Returns a list of actions: ``add`` / ``password`` / ``permissions`` / ``delete:NAME``.
    """
    users = {u.get("name"): u for u in definitions.get("users", [])}
    actions = []
    me = users.get(RABBIT_USER)
    if me is None:
        actions.append("add")
    elif not rabbit_password_matches(str(me.get("password_hash", "")), password):
        actions.append("password")
    perms = [p for p in definitions.get("permissions", []) if p.get("user") == RABBIT_USER and p.get("vhost") == "/"]
    if me is None or not perms or any(perms[0].get(k) != ".*" for k in ("configure", "write", "read")):
        actions.append("permissions")
    actions += [f"delete:{name}" for name in sorted(users) if name != RABBIT_USER]
    return actions


# --- the Keystone catalog ------------------------------------------------------------
@dataclass(frozen=True)
class CatalogAction:
    """One change to the catalog: create a service, create/update/delete an endpoint."""

    kind: str  # "service" | "create" | "update" | "delete"
    service_type: str
    interface: str = ""
    url: str = ""
    endpoint_id: str = ""

    def describe(self) -> str:
        """One line for the log."""
        if self.kind == "service":
            return f"create service {self.service_type}"
        if self.kind == "delete":
            return f"delete duplicate {self.service_type} {self.interface} endpoint {self.endpoint_id}"
        return f"{self.kind} {self.service_type} {self.interface} endpoint -> {self.url}"


def plan_catalog(
    desired: Mapping[tuple[str, str], str],
    services: Sequence[Mapping[str, Any]],
    endpoints: Sequence[Mapping[str, Any]],
    region: str,
) -> list[CatalogAction]:
    """The changes that make the catalog hold exactly ``desired`` in ``region``; empty when it does.

    Args:
        desired: (service type, interface) -> URL.
        services: Keystone's ``GET /v3/services`` entries (``id``, ``type``).
        endpoints: Keystone's ``GET /v3/endpoints`` entries (``id``, ``service_id``, ``interface``, ``url``, ``region_id``).
        region: the region the endpoints belong to.
    """
    by_type: dict[str, str] = {}
    for s in services:
        by_type.setdefault(str(s.get("type")), str(s.get("id")))
    actions: list[CatalogAction] = []
    for stype in sorted({t for t, _ in desired}):
        if stype not in by_type:
            actions.append(CatalogAction("service", stype))
    for (stype, iface), url in sorted(desired.items()):
        sid = by_type.get(stype)
        found = [e for e in endpoints if sid and e.get("service_id") == sid and e.get("interface") == iface]
        found.sort(key=lambda e: (e.get("url") != url, e.get("region_id") != region, str(e.get("id"))))
        if not found:
            actions.append(CatalogAction("create", stype, iface, url))
            continue
        keep, extra = found[0], found[1:]
        if keep.get("url") != url or keep.get("region_id") != region:
            actions.append(CatalogAction("update", stype, iface, url, str(keep.get("id"))))
        for e in extra:
            actions.append(CatalogAction("delete", stype, iface, str(e.get("url")), str(e.get("id"))))
    return actions


# --- the instance's bootable volume ----------------------------------------------------
#: Volume states that mean "this volume exists and is usable".
GOOD_STATES = frozenset({"available", "in-use", "reserved", "attaching", "detaching", "backing-up", "restoring-backup", "maintenance"})
#: States that end by themselves (or by cinder-volume's restart, which errors a stuck "creating").
BUSY_STATES = frozenset({"creating", "downloading", "uploading", "deleting", "extending", "retyping"})
#: States to delete.
BAD_STATES = frozenset({"error", "error_restoring", "error_extending", "error_managing"})


@dataclass(frozen=True)
class VolumePlan:
    """What to do about the instance's bootable volume.

    ``keep``: the id of the volume that is it (nothing else to do when no ``delete``);
    ``delete``: ids of failed or surplus copies; ``wait``: ids still being worked on;
    ``create``: True when none exists and none is on its way.
    """

    keep: str | None
    delete: tuple[str, ...]
    wait: tuple[str, ...]
    create: bool
    reason: str


def plan_boot_volume(volumes: Sequence[Mapping[str, Any]], name: str) -> VolumePlan:
    """Decide from Cinder's volume list (``id``, ``name``, ``status``, ``created_at``, ``attachments``).

    Exactly one volume called ``name`` must remain: the oldest usable one. Failed copies
    are deleted; surplus usable copies too unless attached (never touch an attached one).
    While a copy is still being created, nothing new is made.
    """
    mine = sorted((v for v in volumes if v.get("name") == name), key=lambda v: (str(v.get("created_at", "")), str(v.get("id"))))
    good = [v for v in mine if v.get("status") in GOOD_STATES]
    busy = [v for v in mine if v.get("status") in BUSY_STATES]
    bad = [v for v in mine if v.get("status") not in GOOD_STATES | BUSY_STATES]
    delete = [str(v["id"]) for v in bad if v.get("status") != "error_deleting"]
    if good:
        keep = good[0]
        surplus = [str(v["id"]) for v in good[1:] if not v.get("attachments")]
        delete += surplus
        # A busy copy next to a good one is surplus too, but can only be deleted once it settles.
        wait = tuple(str(v["id"]) for v in busy if v.get("status") != "deleting")
        reason = f"volume {keep['id']} is {keep.get('status')}"
        if delete or wait:
            reason += f"; {len(delete)} surplus/failed to delete, {len(wait)} busy to settle"
        return VolumePlan(str(keep["id"]), tuple(delete), wait, False, reason)
    if busy:
        return VolumePlan(None, tuple(delete), tuple(str(v["id"]) for v in busy), False, f"{len(busy)} copy being worked on ({busy[0].get('status')})")
    if delete:
        return VolumePlan(None, tuple(delete), (), False, f"{len(delete)} failed copy to delete first")
    stuck = [v for v in mine if v.get("status") == "error_deleting"]
    reason = "none exists" + (f" ({len(stuck)} stuck in error_deleting, ignored)" if stuck else "")
    return VolumePlan(None, (), (), True, reason)


# --- guest image -----------------------------------------------------------------------
def pick_image(images: Sequence[Mapping[str, Any]], name: str) -> tuple[str | None, list[str]]:
    """(id of the oldest active image called ``name`` or None, ids of failed/partial ones to delete)."""
    mine = sorted((i for i in images if i.get("name") == name), key=lambda i: (str(i.get("created_at", "")), str(i.get("id"))))
    active = [i for i in mine if i.get("status") == "active"]
    keep = str(active[0]["id"]) if active else None
    drop = [str(i["id"]) for i in mine if i.get("status") in {"queued", "saving", "killed", "deleted", "uploading", "importing"} or (keep and i.get("status") == "active" and str(i["id"]) != keep)]
    return keep, drop


# --- the demo server -------------------------------------------------------------------
#: Server metadata key naming the EC2 instance a demo server was booted by.
INSTANCE_KEY = "coa-instance-id"
#: Server states that end by themselves.
SERVER_BUSY = frozenset({"BUILD", "REBOOT", "HARD_REBOOT", "MIGRATING", "RESIZE", "VERIFY_RESIZE", "REBUILD", "PAUSED", "SUSPENDED"})


@dataclass(frozen=True)
class ServerPlan:
    """What to do about the demo server.

    ``keep``: the id of this instance's server; ``delete``: ids to delete (another
    instance's, failed or surplus ones); ``start``: the kept server is stopped; ``wait``: it
    is still changing state; ``create``: none of this instance's exists and none is left
    to delete (its volume is free).
    """

    keep: str | None
    delete: tuple[str, ...]
    start: bool
    wait: bool
    create: bool
    reason: str


def plan_demo_server(servers: Sequence[Mapping[str, Any]], name: str, instance_id: str) -> ServerPlan:
    """Decide from Nova's server list (``id``, ``name``, ``status``, ``created``, ``metadata``).

    One server called ``name`` must run, booted by this instance (``metadata[INSTANCE_KEY]``).
    A server booted by another instance (the builder, or this disk's previous instance) is
    deleted: its volume connection names that instance's monitor address and libvirt secret.
    Our own server in ERROR is deleted and made again; a stopped one is started.
    """
    mine = sorted((s for s in servers if s.get("name") == name and s.get("status") not in ("DELETED", "SOFT_DELETED")),
                  key=lambda s: (str(s.get("created", "")), str(s.get("id"))))
    ours = [s for s in mine if (s.get("metadata") or {}).get(INSTANCE_KEY) == instance_id]
    others = [str(s["id"]) for s in mine if s not in ours]
    failed = [str(s["id"]) for s in ours if s.get("status") == "ERROR"]
    alive = [s for s in ours if s.get("status") != "ERROR"]
    delete = others + failed + [str(s["id"]) for s in alive[1:]]
    if alive:
        keep = alive[0]
        status = str(keep.get("status"))
        reason = f"server {keep['id']} is {status}"
        if delete:
            reason += f"; {len(delete)} other to delete"
        return ServerPlan(str(keep["id"]), tuple(delete), status == "SHUTOFF", status in SERVER_BUSY, False, reason)
    if delete:
        why = f"{len(others)} of another instance" if others else f"{len(failed)} failed"
        return ServerPlan(None, tuple(delete), False, False, False, f"{why} to delete first")
    return ServerPlan(None, (), False, False, True, "none exists")


# --- the dashboard ---------------------------------------------------------------------
DASHBOARD_SETTINGS = "/etc/openstack-dashboard/local_settings.py"
DASHBOARD_OVERRIDES = "/etc/openstack-dashboard/local_settings.d/_90_ceph_openstack_ami.py"
DASHBOARD_SITE = "/etc/apache2/sites-available/coa-dashboard.conf"


def render_dashboard_settings() -> str:
    """local_settings.py without a secret (the package's would make and keep a key file in the image)."""
    return (
        "# Managed by ceph-openstack-ami (provision/openstack_conf.py). No secret here: the per-instance\n"
        "# values (SECRET_KEY, ALLOWED_HOSTS) are in local_settings.d/_90_ceph_openstack_ami.py.\n"
        "from openstack_dashboard.settings import HORIZON_CONFIG  # noqa: F401\n"
        "DEBUG = False\n"
        "TIME_ZONE = 'UTC'\n"
        "EMAIL_BACKEND = 'django.core.mail.backends.console.EmailBackend'\n"
    )


def _py(value: object) -> str:
    """A Python literal of ``value`` (str, bool, int, list/tuple of those)."""
    return repr(value)


def render_dashboard_overrides(settings: Settings, sec: Secrets, addrs: Addresses) -> str:
    """The dashboard's per-instance settings: served at ``/``, this instance's names only, its own key."""
    o = settings.openstack
    hosts = sorted({addrs.public_host, addrs.private_ip, "localhost", "127.0.0.1"})
    lines = [
        HEADER.format(module="provision/openstack_conf.py").rstrip("\n"),
        "# Read after Debian's local_settings.d files (they put the dashboard at /horizon).",
        "WEBROOT = '/'",
        "LOGIN_URL = '/auth/login/'",
        "LOGOUT_URL = '/auth/logout/'",
        "LOGIN_REDIRECT_URL = '/'",
        "STATIC_URL = '/static/'",
        f"ALLOWED_HOSTS = {_py(hosts)}",
        f"SECRET_KEY = {_py(sec.dashboard_key)}",
        "SESSION_ENGINE = 'django.contrib.sessions.backends.signed_cookies'",
        "OPENSTACK_HOST = '127.0.0.1'",
        f"OPENSTACK_KEYSTONE_URL = {_py(f'http://127.0.0.1:{o.keystone_port}/v3')}",
        "OPENSTACK_KEYSTONE_DEFAULT_ROLE = 'member'",
        f"OPENSTACK_KEYSTONE_DEFAULT_DOMAIN = {_py(DOMAIN)}",
        "OPENSTACK_KEYSTONE_MULTIDOMAIN_SUPPORT = False",
        "OPENSTACK_ENDPOINT_TYPE = 'internalURL'",
        "OPENSTACK_NEUTRON_NETWORK = {'enable_router': False, 'enable_quotas': False, 'enable_distributed_router': False, 'enable_ha_router': False, 'enable_fip_topology_check': False}",
        "CONSOLE_TYPE = 'AUTO'",
        "",
    ]
    return "\n".join(lines)


def render_dashboard_site(settings: Settings) -> str:
    """Apache: the dashboard at ``/`` on the dashboard port, one small mod_wsgi daemon."""
    o = settings.openstack
    listen = "" if o.dashboard_port == 80 else f"Listen {o.dashboard_port}\n"
    return (
        "# Managed by ceph-openstack-ami (provision/openstack_conf.py).\n"
        f"{listen}"
        f"<VirtualHost *:{o.dashboard_port}>\n"
        "    WSGIScriptAlias / /usr/share/openstack-dashboard/wsgi.py\n"
        f"    WSGIDaemonProcess horizon user=www-data group=www-data processes={o.dashboard_processes} threads={o.dashboard_threads} display-name=%{{GROUP}}\n"
        "    WSGIProcessGroup horizon\n"
        "    WSGIApplicationGroup %{GLOBAL}\n"
        "    Alias /static /var/lib/openstack-dashboard/static\n"
        "    <Directory /usr/share/openstack-dashboard>\n"
        "        Require all granted\n"
        "    </Directory>\n"
        "    <Directory /var/lib/openstack-dashboard/static>\n"
        "        Require all granted\n"
        "    </Directory>\n"
        "    ErrorLog /var/log/apache2/coa-dashboard-error.log\n"
        "    CustomLog /var/log/apache2/coa-dashboard-access.log combined\n"
        "</VirtualHost>\n"
    )


def render_libvirtd_conf() -> str:
    """libvirtd.conf: the read-write socket is for group ``libvirt`` (root, nova, qemu), no polkit.

    polkit needs D-Bus activation at the moment Nova connects, which can time out at boot;
    the socket's group and mode (see :func:`render_libvirtd_socket_dropin`) are the access control.
    """
    return (
        "# Managed by ceph-openstack-ami (provision/openstack_conf.py).\n"
        'unix_sock_group = "libvirt"\n'
        'unix_sock_rw_perms = "0770"\n'
        'auth_unix_rw = "none"\n'
    )


def render_libvirtd_socket_dropin() -> str:
    """A drop-in for libvirtd.socket (socket activation ignores libvirtd.conf's socket settings): group libvirt, 0660."""
    return (
        "# Managed by ceph-openstack-ami (provision/openstack_conf.py).\n"
        "[Socket]\n"
        "SocketGroup=libvirt\n"
        "SocketMode=0660\n"
    )


def render_consoleproxy_default() -> str:
    """/etc/default/nova-consoleproxy: the noVNC proxy, not SPICE, no serial proxy."""
    return (
        "# Managed by ceph-openstack-ami (provision/openstack_conf.py).\n"
        "NOVA_CONSOLE_PROXY_TYPE=novnc\n"
        "NOVA_SERIAL_PROXY_START=false\n"
    )


def render_nova_compute_conf(settings: Settings, kvm_usable: bool = False) -> str:
    """nova-compute.conf (read after nova.conf by nova-compute): libvirt, and the same virt_type."""
    return render_ini(
        HEADER.format(module="provision/openstack_conf.py"),
        [
            ("DEFAULT", [("compute_driver", "libvirt.LibvirtDriver")]),
            ("libvirt", [("virt_type", virt_type(settings.openstack.virt_type, kvm_usable))]),
        ],
    )
