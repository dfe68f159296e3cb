"""Placement, Nova and libvirt: placement.conf, nova.conf and nova-compute.conf, libvirtd's socket
access and the libvirt secret that holds client.volumes' key (Nova's RBD attachments), Nova's
schemas and cell mappings, and waiting until the compute host is up.

``virt_type`` follows the host: kvm when /dev/kvm is usable, qemu (TCG) otherwise.
"""

from __future__ import annotations

import hashlib
import posixpath
import time
import uuid

from .. import tls
from ..exceptions import ConfigError, ProvisionError
from ..settings import Settings
from ..steps import outcome
from ..systemd import bounded, ensure_running, wait_for
from ..target import Result, Target
from .addresses import Addresses
from .api import Cloud, HttpError, OpenStackError, Unreachable, agent
from .infra import SchemaCommands, manage, mysql, sql_string
from .ini import PROXY_HEADERS_SECTION, FileSpec, authtoken_section, database_section, managed, rabbit_url, render_managed, service_auth_section
from .profile import OpenStackProfile
from .secrets import Secrets, require_secrets

LIBVIRTD_SOCKET_DROPIN = "/etc/systemd/system/libvirtd.socket.d/ceph-openstack-ami.conf"

#: Database -> the (user, argv) that make its schema: the API database, then the cell mappings
#: (cell0 and cell1), then every cell's schema.
SCHEMAS: SchemaCommands = {
    "placement": [("placement", ["placement-manage", "db", "sync"])],
    "nova_api": [("nova", ["nova-manage", "api_db", "sync"]), ("nova", ["nova-manage", "cell_v2", "map_cell0"])],
    "nova": [("nova", ["sh", "-c", "nova-manage cell_v2 list_cells | grep -q ' cell1 ' || nova-manage cell_v2 create_cell --name cell1"]),
             ("nova", ["nova-manage", "db", "sync"])],
    "nova_cell0": [],  # made by `nova-manage db sync`
}


def virt_type(setting: str, kvm_usable: bool) -> str:
    """libvirt's ``virt_type``: the setting, or for ``auto`` kvm when /dev/kvm is usable, qemu (TCG) otherwise."""
    if setting not in ("auto", "kvm", "qemu"):
        raise ConfigError(f"virt_type must be auto, kvm or qemu, not {setting!r}")
    if setting == "auto":
        return "kvm" if kvm_usable else "qemu"
    return setting


def novnc_url(settings: Settings, addrs: Addresses) -> str:
    """The noVNC URL the dashboard's console opens: its TLS proxy on the public name (the owner's browser follows it)."""
    return tls.https_url(addrs.public_host, settings.tls.novnc_port, "/vnc_auto.html")


def render_nova_conf(settings: Settings, sec: Secrets, addrs: Addresses, kvm_usable: bool = False) -> str:
    """nova.conf: API, conductor, scheduler and compute on one host; libvirt with RBD volumes; noVNC on the public name."""
    o = settings.openstack
    return render_managed(
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
            database_section("api_database", "nova", sec.nova_db, "nova_api"),
            database_section("database", "nova", sec.nova_db, "nova"),
            authtoken_section(settings, addrs, "nova", sec.nova_service),
            service_auth_section("service_user", settings, addrs, "nova", sec.nova_service, [("send_service_user_token", True)]),
            service_auth_section("placement", settings, addrs, "placement", sec.placement_service),
            service_auth_section("neutron", settings, addrs, "neutron", sec.neutron_service, [("service_metadata_proxy", False)]),
            ("glance", [("valid_interfaces", "internal"), ("region_name", o.region)]),
            # Credentials too: nova-compute deletes volume attachments without a user's token
            # when it cleans up (a deleted server of an earlier instance, for one).
            service_auth_section("cinder", settings, addrs, "nova", sec.nova_service,
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
                    # Only the TLS proxy on this instance reaches it (provision/openstack/proxy.py).
                    ("novncproxy_host", "127.0.0.1"),
                    ("novncproxy_port", o.novnc_port),
                    ("novncproxy_base_url", novnc_url(settings, addrs)),
                ],
            ),
            ("oslo_concurrency", [("lock_path", "/var/lib/nova/tmp")]),
            ("oslo_messaging_notifications", [("driver", "noop")]),
            PROXY_HEADERS_SECTION,
            ("os_vif_linux_bridge", [("use_ipv6", False)]),
            ("wsgi", [("api_paste_config", "/etc/nova/api-paste.ini")]),
        ],
    )


def render_placement_conf(settings: Settings, sec: Secrets, addrs: Addresses) -> str:
    """placement.conf: its database and Keystone authentication."""
    return render_managed(
        [
            ("DEFAULT", [("log_dir", "/var/log/placement")]),
            ("api", [("auth_strategy", "keystone")]),
            database_section("placement_database", "placement", sec.placement_db, "placement"),
            authtoken_section(settings, addrs, "placement", sec.placement_service),
        ],
    )


def render_nova_compute_conf(settings: Settings, kvm_usable: bool = False) -> str:
    """nova-compute.conf (read after nova.conf by nova-compute): libvirt, and the same virt_type."""
    return render_managed(
        [
            ("DEFAULT", [("compute_driver", "libvirt.LibvirtDriver")]),
            ("libvirt", [("virt_type", virt_type(settings.openstack.virt_type, kvm_usable))]),
        ],
    )


def render_consoleproxy_default() -> str:
    """/etc/default/nova-consoleproxy: the noVNC proxy, not SPICE, no serial proxy."""
    return (
        managed() +
        "NOVA_CONSOLE_PROXY_TYPE=novnc\n"
        "NOVA_SERIAL_PROXY_START=false\n"
    )


def render_libvirtd_conf() -> str:
    """libvirtd.conf: the read-write socket is for group ``libvirt`` (root, nova, qemu), no polkit.

    polkit needs D-Bus activation at the moment Nova connects, which can time out at boot;
    the socket's group and mode (see :func:`render_libvirtd_socket_dropin`) are the access control.
    """
    return (
        managed() +
        'unix_sock_group = "libvirt"\n'
        'unix_sock_rw_perms = "0770"\n'
        'auth_unix_rw = "none"\n'
    )


def render_libvirtd_socket_dropin() -> str:
    """A drop-in for libvirtd.socket (socket activation ignores libvirtd.conf's socket settings): group libvirt, 0660."""
    return (
        managed() +
        "[Socket]\n"
        "SocketGroup=libvirt\n"
        "SocketMode=0660\n"
    )


LIBVIRT_SECRET_USAGE = "client.{user} secret"
#: Under ``state_dir`` (root, 0600; the scrub removes ``secrets/*`` with libvirt's stored values):
#: the hash of the (uuid, key) pair last given to the private libvirt secret, which nobody can read back.
LIBVIRT_SECRET_RECORD = "secrets/libvirt-secret.sha256"


def render_libvirt_secret_xml(secret_uuid: str, user: str) -> str:
    """The libvirt secret that holds ``client.USER``'s cephx key (for Nova's RBD attachments).

    ``private='yes'``: libvirt never hands the value out through its API (``virsh
    secret-get-value`` is refused); QEMU gets it from libvirtd directly.
    """
    uuid.UUID(secret_uuid)  # raises ValueError on garbage
    return (
        "<secret ephemeral='no' private='yes'>\n"
        f"  <uuid>{secret_uuid}</uuid>\n"
        "  <usage type='ceph'>\n"
        f"    <name>{LIBVIRT_SECRET_USAGE.format(user=user)}</name>\n"
        "  </usage>\n"
        "</secret>\n"
    )


def secret_is_private(dumpxml: str) -> bool:
    """True when ``virsh secret-dumpxml`` output is a secret defined ``private='yes'``."""
    head = dumpxml.split(">", 1)[0]
    return "<secret" in head and ("private='yes'" in head or 'private="yes"' in head)


def secret_value_digest(secret_uuid: str, key: str) -> str:
    """What :data:`LIBVIRT_SECRET_RECORD` holds for ``key`` set on ``secret_uuid`` (a SHA-256, not the key)."""
    return hashlib.sha256(f"{secret_uuid}\n{key.strip()}".encode()).hexdigest()


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


def compute_files(settings: Settings, prof: OpenStackProfile, sec: Secrets, addrs: Addresses, kvm: bool) -> list[FileSpec]:
    """placement.conf, nova.conf and nova-compute.conf (0640 root:<service>)."""
    return [
        FileSpec("/etc/placement/placement.conf", render_placement_conf(settings, sec, addrs), 0o640, "root", "placement", (prof.placement_unit,)),
        FileSpec("/etc/nova/nova.conf", render_nova_conf(settings, sec, addrs, kvm), 0o640, "root", "nova", prof.nova_units),
        FileSpec("/etc/nova/nova-compute.conf", render_nova_compute_conf(settings, kvm), 0o640, "root", "nova", tuple(u for u in prof.agent_units if u.startswith("nova-"))),
    ]


def hypervisor_files(prof: OpenStackProfile) -> list[FileSpec]:
    """The noVNC proxy's /etc/default file, libvirtd.conf and libvirtd.socket's drop-in (no secrets)."""
    return [
        FileSpec("/etc/default/nova-consoleproxy", render_consoleproxy_default(), 0o644, "root", "root", ("nova-novncproxy.service",)),
        FileSpec("/etc/libvirt/libvirtd.conf", render_libvirtd_conf(), 0o644, "root", "root", (prof.libvirt_unit,)),
        FileSpec(LIBVIRTD_SOCKET_DROPIN, render_libvirtd_socket_dropin(), 0o644, "root", "root", ()),
    ]


def restart_libvirt_socket(target: Target, prof: OpenStackProfile) -> None:
    """Apply a changed socket drop-in: stop libvirtd and its socket, start the socket.

    A socket cannot be restarted under its running service; libvirtd starts again on the
    first connection.
    """
    target.run(bounded(["systemctl", "stop", prof.libvirt_unit, "libvirtd.socket"], 120), check=False)
    target.run(bounded(["systemctl", "start", "libvirtd.socket"], 60))


def kvm_usable(target: Target) -> bool:
    """True when the host has a KVM device node (``virt_type = auto`` uses kvm then, qemu/TCG otherwise)."""
    return target.run(["test", "-c", "/dev/kvm", "-a", "-w", "/dev/kvm"], check=False).ok


def virsh(target: Target, *args: str, check: bool = True, stdin: str | None = None) -> Result:
    """``virsh -c qemu:///system ARGS``, bounded (libvirtd starts on demand through its socket)."""
    return target.run(bounded(["virsh", "-q", "-c", "qemu:///system", *args], 60), check=check, stdin=stdin)


def volumes_key(target: Target, settings: Settings) -> str:
    """client.volumes' cephx key, from its keyring (rotated per instance by coa-ceph-keys)."""
    path = f"/etc/ceph/{settings.ceph.cluster}.client.{settings.volume_pool}.keyring"
    return keyring_key(target.read(path).decode())


def ensure_libvirt_secret(target: Target, settings: Settings, sec: Secrets) -> list[str]:
    """One private libvirt secret for client.volumes: uuid ``sec.libvirt_secret_uuid``, value its current key.

    Any other secret with the same usage (an old instance's) is undefined first; ours is
    defined again when it is not private (an image made before it was). A private secret's
    value cannot be read back, so whether it holds the current key is decided by a record:
    the SHA-256 of (uuid, key) last set, root-only under ``state_dir``; the value is set
    whenever the record differs or the secret was (re)defined.
    """
    usage = LIBVIRT_SECRET_USAGE.format(user=settings.volume_pool)
    key = volumes_key(target, settings)
    uid = sec.libvirt_secret_uuid
    record = posixpath.join(settings.state_dir, LIBVIRT_SECRET_RECORD)
    done = []
    # libvirtd runs on demand from its socket, which a fresh install (services held back while
    # packages install) has not started yet: start both (a no-op when they run).
    target.run(bounded(["systemctl", "start", "libvirtd.socket", "libvirtd.service"], 120))
    rows = parse_virsh_secret_list(virsh(target, "secret-list").stdout)
    for other, use in rows:
        if other != uid and use.endswith(usage):
            virsh(target, "secret-undefine", other)
            done.append(f"undefined libvirt secret {other}")
    defined = any(u == uid for u, _ in rows)
    if defined and not secret_is_private(virsh(target, "secret-dumpxml", uid).stdout):
        virsh(target, "secret-undefine", uid)
        done.append(f"undefined libvirt secret {uid} (not private)")
        defined = False
    fresh = not defined
    if fresh:
        xml = f"/run/coa-libvirt-secret-{uid}.xml"
        target.put(xml, render_libvirt_secret_xml(uid, settings.volume_pool), 0o600)
        try:
            virsh(target, "secret-define", "--file", xml)
        finally:
            target.run(["rm", "-f", xml])
        done.append(f"defined private libvirt secret {uid}")
    digest = secret_value_digest(uid, key)
    known = target.read(record).decode().strip() if target.exists(record) else ""
    if not fresh and known == digest:
        return done
    # The value goes through a 0600 file, never the command line.
    tmp = f"/run/coa-libvirt-secret-{uid}.b64"
    target.put(tmp, key, 0o600)
    try:
        virsh(target, "secret-set-value", "--secret", uid, "--file", tmp)
    finally:
        target.run(["rm", "-f", tmp])
    target.run(["install", "-d", "-m", "0700", posixpath.dirname(record)])
    target.put(record, digest + "\n", 0o600)
    done.append(f"set the value of libvirt secret {uid} (client.{settings.volume_pool} key)")
    return done


#: Nova's cell mappings as templates, filled in by each service from its own nova.conf: the
#: mappings then hold no password, and follow the per-instance rotation of the database and
#: RabbitMQ passwords (a literal URL would keep the builder's).
CELL_DB_TEMPLATES = {
    "cell0": "{scheme}://{username}:{password}@{hostname}/nova_cell0?{query}",
    "cell1": "{scheme}://{username}:{password}@{hostname}/{path}?{query}",
}
CELL_MQ_TEMPLATE = "{scheme}://{username}:{password}@{hostname}:{port}/{path}"


def ensure_cell_templates(target: Target) -> list[str]:
    """Point Nova's cell0 and cell1 mappings at templates (see :data:`CELL_DB_TEMPLATES`); what changed."""
    rows = mysql(target, "SELECT name, database_connection, transport_url FROM nova_api.cell_mappings;\n").stdout
    did = []
    for line in rows.splitlines():
        name, db_url, mq_url = (line.split("\t") + ["", "", ""])[:3]
        if name not in CELL_DB_TEMPLATES:
            continue
        sets = []
        if db_url != CELL_DB_TEMPLATES[name]:
            sets.append(f"database_connection = {sql_string(CELL_DB_TEMPLATES[name])}")
        if name != "cell0" and mq_url != CELL_MQ_TEMPLATE:
            sets.append(f"transport_url = {sql_string(CELL_MQ_TEMPLATE)}")
        if sets:
            mysql(target, f"UPDATE nova_api.cell_mappings SET {', '.join(sets)} WHERE name = {sql_string(name)};\n")
            did.append(f"cell {name} mapped by template (no password stored)")
    return did


def nova_host_mapped(target: Target, settings: Settings) -> bool:
    """True when Nova's cell mappings know this compute host."""
    r = target.run(bounded(["runuser", "-u", "nova", "--", "nova-manage", "cell_v2", "list_hosts"], 120), check=False)
    return r.ok and f" {settings.hostname} " in r.stdout


def libvirt_step(target: Target, settings: Settings) -> tuple[bool, str]:
    """The libvirt secret holding client.volumes' key under this host's uuid."""
    sec = require_secrets(target, settings)
    did = ensure_libvirt_secret(target, settings, sec)
    return outcome(did, f"libvirt secret {sec.libvirt_secret_uuid} holds the client.{settings.volume_pool} key")


def compute_step(target: Target, settings: Settings, prof: OpenStackProfile) -> tuple[bool, str]:
    """The guests' network link, Placement, Nova and Neutron running; this host mapped in cell1; agents alive."""
    did = ensure_running(target, [prof.guest_net_unit, *prof.compute_api_units, *prof.agent_units])
    if not nova_host_mapped(target, settings):
        def discovered() -> bool:
            manage(target, "nova", ["nova-manage", "cell_v2", "discover_hosts"], 120)
            return nova_host_mapped(target, settings)

        waited = wait_for(f"nova-compute on {settings.hostname} to register", discovered, settings.openstack.start_timeout_s, 3.0)
        did.append(f"mapped compute host {settings.hostname} in cell1 (after {waited:.0f}s)")
    r = agent(target, "wait-compute", "--timeout", str(settings.openstack.start_timeout_s))
    detail = f"compute and network agents ready (waited {float(r.get('waited', 0)):.0f}s)"
    return outcome([*did, detail] if did else [], detail)


def compute_ready(cloud: Cloud) -> str | None:
    """None when nova-compute is up and its hypervisor mapped, and Neutron's L2 and DHCP agents are alive; else what is missing."""
    try:
        services = cloud.call("GET", f"{cloud.nova}/os-services?binary=nova-compute").get("services", [])
        if not any(s.get("state") == "up" and s.get("status") == "enabled" for s in services):
            return "nova-compute is not up"
        if not cloud.call("GET", f"{cloud.nova}/os-hypervisors").get("hypervisors"):
            return "no hypervisor mapped (nova-manage cell_v2 discover_hosts)"
        agents = cloud.call("GET", f"{cloud.neutron}/agents").get("agents", [])
        alive = {a.get("binary") for a in agents if a.get("alive") and a.get("admin_state_up")}
        missing = [b for b in ("neutron-linuxbridge-agent", "neutron-dhcp-agent") if b not in alive]
        if missing:
            return " and ".join(missing) + " not alive"
    except (Unreachable, HttpError) as e:
        return str(e).splitlines()[0][:160]
    return None


def wait_compute(cloud: Cloud, timeout: float) -> float:
    """Wait until :func:`compute_ready`; the seconds waited (OpenStackError naming what is missing)."""
    start = time.monotonic()
    why: list[str | None] = [None]

    def probe() -> bool:
        why[0] = compute_ready(cloud)
        return why[0] is None

    try:
        return wait_for("Nova compute and Neutron's agents", probe, timeout, 1.0)
    except ProvisionError:
        raise OpenStackError(f"Compute not ready after {time.monotonic() - start:.0f}s: {why[0]}", hint="see `journalctl -u nova-compute -u neutron-linuxbridge-agent -u neutron-dhcp-agent`") from None
