"""OpenStack on Ceph: Keystone, Glance and Cinder from the distribution's packages, as system services.

Provisioning (:func:`steps`) installs the packages without recommends, points them at
MariaDB (local socket only) and RabbitMQ (loopback only), wires Glance and Cinder to the
RBD pools, bootstraps Keystone, registers the catalog and the golden guest image, and
enables every service so systemd starts them at boot. Nothing is reinstalled at boot:
the boot jobs (:mod:`provision.openstack_boot`) only reconfigure.

The helpers that act on a host (database users, RabbitMQ, Fernet keys, config files, the
libvirt secret) live here and are shared by provisioning and the boot jobs, so both write
exactly the same files: a second provisioning run, or a boot where nothing changed,
changes nothing. Stdlib only: the boot agent imports this module on the instance.

No secret ever appears on a command line (they go through stdin or files of mode 0600)
or in a log line, except the one console line that gives the owner the admin password.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import time
from dataclasses import dataclass
from typing import Callable

from .exceptions import CommandFailed, ConfigError, ProvisionError
from .openstack_conf import (
    DATABASES,
    LIBVIRT_SECRET_USAGE,
    OBSERVE_DATABASE_SQL,
    OPENRC_PATH,
    RABBIT_USER,
    Addresses,
    Secrets,
    keyring_key,
    new_fernet_key,
    parse_database_observation,
    parse_virsh_secret_list,
    plan_database,
    plan_rabbit,
    DASHBOARD_OVERRIDES,
    DASHBOARD_SETTINGS,
    DASHBOARD_SITE,
    render_guest_net_unit,
    render_cinder_conf,
    render_consoleproxy_default,
    render_dashboard_overrides,
    render_dashboard_settings,
    render_dashboard_site,
    render_default_file,
    render_dhcp_agent_ini,
    render_libvirtd_conf,
    render_libvirtd_socket_dropin,
    render_linuxbridge_agent_ini,
    render_ml2_conf,
    render_neutron_conf,
    render_nova_compute_conf,
    render_nova_conf,
    render_placement_conf,
    render_glance_api_conf,
    render_keystone_conf,
    render_libvirt_secret_xml,
    render_mariadb_cnf,
    render_openrc,
    render_rabbitmq_env,
    render_uwsgi_ini,
    sql_string,
    uwsgi_apps,
    uwsgi_ini_path,
)
from .settings import Settings
from .steps import FnStep, Step, apt_install, missing_packages
from .target import Result, Target, command_line

Log = Callable[[str], None]

#: Seconds any single database, broker, *-manage or virsh command may run.
COMMAND_TIMEOUT_S = 180
#: Where provisioning and the boot agent keep this instance's OpenStack secrets (root, 0600).
SECRETS_NAME = "openstack/secrets.json"
PENDING_NAME = "openstack/secrets.pending.json"
#: The distribution profile provisioning used (read by the boot jobs).
PROFILE_NAME = "openstack/profile"
ERLANG_COOKIE = "/var/lib/rabbitmq/.erlang.cookie"
POLICY_RC_D = "/usr/sbin/policy-rc.d"
POLICY_RC_D_TEXT = "#!/bin/sh\n# ceph-openstack-ami: no service starts during package installation.\nexit 101\n"


# --- what differs between distributions ----------------------------------------------
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
    guest_net_unit: str = "ceph-openstack-ami-guest-net.service"

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
)
#: Also the order of the boot jobs' units (provision/boot.py).
COMPUTE_API_UNITS = (
    "placement-api.service",
    "nova-api.service",
    "nova-conductor.service",
    "nova-scheduler.service",
    "nova-novncproxy.service",
    "neutron-api.service",
    "neutron-rpc-server.service",
)
AGENT_UNITS = ("nova-compute.service", "neutron-linuxbridge-agent.service", "neutron-dhcp-agent.service")
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


# --- small command helpers -------------------------------------------------------------
def bounded(argv: list[str], seconds: int = COMMAND_TIMEOUT_S) -> list[str]:
    """Wrap ``argv`` in ``timeout`` (killed after ``seconds``)."""
    return ["timeout", "-k", "5", str(seconds), *argv]


def mysql(target: Target, sql: str, check: bool = True) -> Result:
    """Run SQL (fed on stdin, never on the command line) as MariaDB's root over the local socket."""
    return target.run(bounded(["mysql", "--protocol=socket", "-N", "-B"], 120), check=check, stdin=sql)


def wait_for(what: str, probe: Callable[[], bool], timeout: float, interval: float = 1.0) -> float:
    """Poll ``probe`` until True; return the seconds waited; ProvisionError after ``timeout``."""
    start = time.monotonic()
    while not probe():
        if time.monotonic() - start > timeout:
            raise ProvisionError(f"Timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - start


def wait_mysql(target: Target, timeout: float = 120) -> float:
    """Wait until MariaDB answers on its socket."""
    return wait_for("MariaDB to answer", lambda: mysql(target, "SELECT 1;", check=False).ok, timeout)


def rabbitmqctl(target: Target, *args: str, stdin: str | None = None, check: bool = True, seconds: int = 60) -> Result:
    """``rabbitmqctl ARGS`` (passwords go on stdin), bounded."""
    return target.run(bounded(["rabbitmqctl", *args], seconds), check=check, stdin=stdin)


def wait_rabbit(target: Target, timeout: float = 180) -> float:
    """Wait until the RabbitMQ node has booted."""
    return wait_for("RabbitMQ to start", lambda: rabbitmqctl(target, "-q", "await_startup", "--timeout", "10", check=False, seconds=30).ok, timeout)


def manage(target: Target, user: str, argv: list[str], seconds: int = COMMAND_TIMEOUT_S, stdin: str | None = None) -> Result:
    """Run a ``*-manage`` command as the service's user (root-owned logs would stop the service later)."""
    return target.run(bounded(["runuser", "-u", user, "--", *argv], seconds), stdin=stdin)


def unit_enabled(target: Target, unit: str) -> bool:
    """True when systemd says the unit is enabled."""
    return target.run(["systemctl", "is-enabled", "--quiet", unit], check=False).ok


def ensure_running(target: Target, units: list[str], timeout: int = 300) -> list[str]:
    """Enable and start ``units``; return what had to be done (empty when nothing)."""
    done = []
    to_enable = [u for u in units if not unit_enabled(target, u)]
    if to_enable:
        target.run(["systemctl", "enable", "--quiet", *to_enable])
        done.append("enabled " + " ".join(to_enable))
    to_start = [u for u in units if not target.service_active(u)]
    if to_start:
        target.run(bounded(["systemctl", "start", *to_start], timeout))
        done.append("started " + " ".join(to_start))
    return done


def restart_if_active(target: Target, units: list[str], log: Log | None = None, queue: bool = False) -> list[str]:
    """Restart the units among ``units`` that are running (at boot they are not yet: nothing happens).

    ``queue``: only queue the restarts (``--no-block``). A boot job must: its unit is ordered
    before these services, so a blocking restart from inside it would wait for itself.
    """
    active = [u for u in units if target.service_active(u)]
    if active:
        if log:
            log(("queueing a restart of " if queue else "restarting ") + " ".join(active))
        target.run(bounded(["systemctl", *(["--no-block"] if queue else []), "restart", *active], 300))
    return active


# --- secrets -----------------------------------------------------------------------------
def secrets_path(settings: Settings) -> str:
    """The root-only file that holds this instance's OpenStack secrets."""
    return posixpath.join(settings.state_dir, SECRETS_NAME)


def pending_path(settings: Settings) -> str:
    """Where a rotation keeps the secrets it is installing until it is complete."""
    return posixpath.join(settings.state_dir, PENDING_NAME)


def load_secrets(target: Target, settings: Settings, path: str | None = None) -> Secrets | None:
    """This host's secrets, or None when there are none yet."""
    try:
        text = target.read(path or secrets_path(settings)).decode()
    except FileNotFoundError:
        return None
    return Secrets.from_json(text)


def require_secrets(target: Target, settings: Settings) -> Secrets:
    """This host's secrets; ProvisionError when provisioning never made them."""
    sec = load_secrets(target, settings)
    if sec is None:
        raise ProvisionError(f"No OpenStack secrets at {secrets_path(settings)}", hint="provision the host (invoke provision.host)")
    return sec


def save_secrets(target: Target, settings: Settings, sec: Secrets, path: str | None = None) -> bool:
    """Write the secrets file (root, 0600); True if it changed."""
    target.run(["install", "-d", "-m", "0700", posixpath.dirname(path or secrets_path(settings))])
    return target.put(path or secrets_path(settings), sec.to_json(), 0o600)


# --- MariaDB -------------------------------------------------------------------------------
def ensure_database(target: Target, settings: Settings, sec: Secrets) -> list[str]:
    """Databases keystone/glance/cinder with local users whose passwords are ``sec``'s; what changed."""
    observed = parse_database_observation(mysql(target, OBSERVE_DATABASE_SQL).stdout)
    sql, what = plan_database(observed, sec)
    if sql:
        mysql(target, "\n".join(sql + ["FLUSH PRIVILEGES;"]) + "\n")
    return what


def table_count(target: Target, database: str) -> int:
    """How many tables ``database`` holds (0 before its schema was made)."""
    out = mysql(target, f"SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{database}';\n").stdout
    return int(out.strip() or 0)


# --- RabbitMQ --------------------------------------------------------------------------------
def ensure_rabbit(target: Target, sec: Secrets) -> list[str]:
    """User ``openstack`` with this instance's password and all rights on ``/``; no other user."""
    defs = json.loads(rabbitmqctl(target, "-q", "export_definitions", "-").stdout or "{}")
    done = []
    for action in plan_rabbit(defs, sec.rabbit):
        if action == "add":
            rabbitmqctl(target, "add_user", RABBIT_USER, stdin=sec.rabbit + "\n")
            done.append(f"added user {RABBIT_USER}")
        elif action == "password":
            rabbitmqctl(target, "change_password", RABBIT_USER, stdin=sec.rabbit + "\n")
            done.append(f"new password for {RABBIT_USER}")
        elif action == "permissions":
            rabbitmqctl(target, "set_permissions", "-p", "/", RABBIT_USER, ".*", ".*", ".*")
            done.append(f"permissions of {RABBIT_USER}")
        elif action.startswith("delete:"):
            rabbitmqctl(target, "delete_user", action.split(":", 1)[1])
            done.append(f"deleted user {action.split(':', 1)[1]}")
    return done


def ensure_cookie(target: Target, cookie: str, broker_unit: str, log: Log | None = None) -> bool:
    """Give RabbitMQ's Erlang distribution this cookie; the broker is stopped around the change.

    It is stopped whatever its state: a broker still starting has read the old cookie.
    """
    state = target.file_state(ERLANG_COOKIE)
    if state is not None and state.sha256 == hashlib.sha256(cookie.encode()).hexdigest():
        return False
    if log:
        log(f"stopping {broker_unit} to give it a new Erlang cookie")
    target.run(bounded(["systemctl", "stop", broker_unit], 120))
    target.put(ERLANG_COOKIE, cookie, 0o400, "rabbitmq", "rabbitmq")
    target.run(bounded(["systemctl", "start", broker_unit], 300))
    wait_rabbit(target)
    return True


# --- Keystone keys ---------------------------------------------------------------------------
KEY_REPOSITORIES = ("/etc/keystone/fernet-keys", "/etc/keystone/credential-keys")


def key_repository_ready(target: Target, path: str) -> bool:
    """True when a Keystone key repository has its primary (1) and staged (0) keys."""
    return target.run(["test", "-s", f"{path}/0", "-a", "-s", f"{path}/1"], check=False).ok


def new_key_repository(target: Target, path: str) -> None:
    """Replace a Keystone key repository with two new keys (0 staged, 1 primary), keystone-owned.

    Written next to the old one and swapped in, so the repository is never half-made.
    """
    tmp = path + ".new"
    old = path + ".old"
    target.run(["rm", "-rf", tmp, old])
    target.run(["install", "-d", "-o", "keystone", "-g", "keystone", "-m", "0700", tmp])
    for index in ("0", "1"):
        target.put(f"{tmp}/{index}", new_fernet_key(), 0o600, "keystone", "keystone")
    target.run("if [ -e %s ]; then mv %s %s; fi && mv %s %s && rm -rf %s", path, path, old, tmp, path, old)


def purge_keystone_credentials(target: Target) -> None:
    """Delete stored credentials (encrypted with the old credential keys) and application credentials."""
    sql = (
        "DELETE FROM keystone.credential;\n"
        "DELETE FROM keystone.application_credential_role;\n"
        "DELETE FROM keystone.application_credential_access_rule;\n"
        "DELETE FROM keystone.application_credential;\n"
    )
    mysql(target, sql)


KEYSTONE_BOOTSTRAP = [
    "keystone-manage", "bootstrap",
    "--bootstrap-username", "admin",
    "--bootstrap-project-name", "admin",
    "--bootstrap-role-name", "admin",
]


def keystone_bootstrap(target: Target, settings: Settings, admin_password: str) -> None:
    """``keystone-manage bootstrap``: admin project, user (this password), roles and region; no endpoints.

    The password travels on stdin into the environment variable keystone-manage reads.
    """
    argv = ["runuser", "-u", "keystone", "--", *KEYSTONE_BOOTSTRAP, "--bootstrap-region-id", settings.openstack.region]
    line = "read -r OS_BOOTSTRAP_PASSWORD && export OS_BOOTSTRAP_PASSWORD && exec " + command_line(bounded(argv))
    target.run(line, stdin=admin_password + "\n")


# --- configuration files -------------------------------------------------------------------
@dataclass(frozen=True)
class FileSpec:
    """A file to write: content, mode and ownership, and the units that read it."""

    path: str
    content: str
    mode: int
    owner: str
    group: str
    units: tuple[str, ...]


def config_files(settings: Settings, prof: OpenStackProfile, sec: Secrets, addrs: Addresses, kvm: bool = False) -> list[FileSpec]:
    """The files holding secrets or addresses: 0640 root:<service group>, openrc 0600 root.

    ``kvm``: the host has a usable /dev/kvm (``virt_type = auto`` picks kvm then).
    """
    return [
        FileSpec("/etc/keystone/keystone.conf", render_keystone_conf(settings, sec), 0o640, "root", "keystone", (prof.keystone_unit,)),
        FileSpec("/etc/glance/glance-api.conf", render_glance_api_conf(settings, sec, addrs), 0o640, "root", "glance", (prof.glance_unit,)),
        FileSpec("/etc/cinder/cinder.conf", render_cinder_conf(settings, sec, addrs), 0o640, "root", "cinder", prof.cinder_units),
        FileSpec("/etc/placement/placement.conf", render_placement_conf(settings, sec, addrs), 0o640, "root", "placement", (prof.placement_unit,)),
        FileSpec("/etc/nova/nova.conf", render_nova_conf(settings, sec, addrs, kvm), 0o640, "root", "nova", prof.nova_units),
        FileSpec("/etc/nova/nova-compute.conf", render_nova_compute_conf(settings, kvm), 0o640, "root", "nova", tuple(u for u in prof.agent_units if u.startswith("nova-"))),
        FileSpec("/etc/neutron/neutron.conf", render_neutron_conf(settings, sec, addrs), 0o640, "root", "neutron", prof.neutron_units),
        FileSpec(DASHBOARD_OVERRIDES, render_dashboard_overrides(settings, sec, addrs), 0o640, "root", "www-data", (prof.dashboard_unit,)),
        FileSpec(OPENRC_PATH, render_openrc(settings, sec, addrs), 0o600, "root", "root", ()),
    ]


def service_files(settings: Settings, prof: OpenStackProfile) -> list[FileSpec]:
    """Files that tune the services (no secrets, no addresses): uWSGI, MariaDB, RabbitMQ."""
    files = [
        FileSpec("/etc/mysql/mariadb.conf.d/99-ceph-openstack-ami.cnf", render_mariadb_cnf(settings), 0o644, "root", "root", (prof.database_unit,)),
        FileSpec("/etc/rabbitmq/rabbitmq-env.conf", render_rabbitmq_env(), 0o644, "root", "root", (prof.broker_unit,)),
    ]
    apps = uwsgi_apps(settings)
    for package in prof.uwsgi_packages:
        unit = f"{package}.service"
        files.append(FileSpec(uwsgi_ini_path(package), render_uwsgi_ini(apps[package]), 0o644, "root", "root", (unit,)))
        default = apps[package].default_name or package
        files.append(FileSpec(f"/etc/default/{default}", render_default_file(package), 0o644, "root", "root", (unit,)))
    if prof.agent_units:
        neutron = prof.neutron_units
        files += [
            FileSpec("/etc/neutron/plugins/ml2/ml2_conf.ini", render_ml2_conf(settings), 0o644, "root", "neutron", neutron),
            FileSpec("/etc/neutron/plugins/ml2/linuxbridge_agent.ini", render_linuxbridge_agent_ini(settings), 0o644, "root", "neutron", neutron),
            FileSpec("/etc/neutron/dhcp_agent.ini", render_dhcp_agent_ini(settings), 0o644, "root", "neutron", neutron),
            FileSpec("/etc/default/nova-consoleproxy", render_consoleproxy_default(), 0o644, "root", "root", ("nova-novncproxy.service",)),
            FileSpec("/etc/libvirt/libvirtd.conf", render_libvirtd_conf(), 0o644, "root", "root", (prof.libvirt_unit,)),
            FileSpec("/etc/systemd/system/libvirtd.socket.d/ceph-openstack-ami.conf", render_libvirtd_socket_dropin(), 0o644, "root", "root", ()),
            FileSpec(f"/etc/systemd/system/{prof.guest_net_unit}", render_guest_net_unit(settings), 0o644, "root", "root", ()),
            FileSpec(DASHBOARD_SETTINGS, render_dashboard_settings(), 0o644, "root", "root", (prof.dashboard_unit,)),
            FileSpec(DASHBOARD_SITE, render_dashboard_site(settings), 0o644, "root", "root", (prof.dashboard_unit,)),
        ]
    return files


def write_files(target: Target, files: list[FileSpec]) -> list[FileSpec]:
    """Write ``files`` (unchanged content is left alone); return the ones that changed."""
    return [f for f in files if target.put(f.path, f.content, f.mode, f.owner, f.group)]


def kvm_usable(target: Target) -> bool:
    """True when the host has a KVM device node (``virt_type = auto`` uses kvm then, qemu/TCG otherwise)."""
    return target.run(["test", "-c", "/dev/kvm", "-a", "-w", "/dev/kvm"], check=False).ok


def write_configs(target: Target, settings: Settings, prof: OpenStackProfile, sec: Secrets, addrs: Addresses) -> list[FileSpec]:
    """Render and write every secret- or address-bearing file; return the ones that changed."""
    return write_files(target, config_files(settings, prof, sec, addrs, kvm_usable(target)))


def units_of(files: list[FileSpec]) -> list[str]:
    """The units that read any of ``files`` (in first-seen order, no repeats)."""
    out: list[str] = []
    for f in files:
        out += [u for u in f.units if u not in out]
    return out


# --- the libvirt secret ----------------------------------------------------------------------
def virsh(target: Target, *args: str, check: bool = True, stdin: str | None = None) -> Result:
    """``virsh -c qemu:///system ARGS``, bounded (libvirtd starts on demand through its socket)."""
    return target.run(bounded(["virsh", "-q", "-c", "qemu:///system", *args], 60), check=check, stdin=stdin)


def volumes_key(target: Target, settings: Settings) -> str:
    """client.volumes' cephx key, from its keyring (rotated per instance by coa-ceph-keys)."""
    path = f"/etc/ceph/{settings.ceph.cluster}.client.{settings.volume_pool}.keyring"
    return keyring_key(target.read(path).decode())


def ensure_libvirt_secret(target: Target, settings: Settings, sec: Secrets) -> list[str]:
    """One libvirt secret for client.volumes: uuid ``sec.libvirt_secret_uuid``, value its current key.

    Any other secret with the same usage (an old instance's) is undefined first.
    """
    usage = LIBVIRT_SECRET_USAGE.format(user=settings.volume_pool)
    key = volumes_key(target, settings)
    done = []
    # libvirtd runs on demand from its socket, which a fresh install (services held back while
    # packages install) has not started yet: start both (a no-op when they run).
    target.run(bounded(["systemctl", "start", "libvirtd.socket", "libvirtd.service"], 120))
    rows = parse_virsh_secret_list(virsh(target, "secret-list").stdout)
    for uid, use in rows:
        if uid != sec.libvirt_secret_uuid and use.endswith(usage):
            virsh(target, "secret-undefine", uid)
            done.append(f"undefined libvirt secret {uid}")
    if not any(uid == sec.libvirt_secret_uuid for uid, _ in rows):
        xml = f"/run/coa-libvirt-secret-{sec.libvirt_secret_uuid}.xml"
        target.put(xml, render_libvirt_secret_xml(sec.libvirt_secret_uuid, settings.volume_pool), 0o600)
        try:
            virsh(target, "secret-define", "--file", xml)
        finally:
            target.run(["rm", "-f", xml])
        done.append(f"defined libvirt secret {sec.libvirt_secret_uuid}")
    current = virsh(target, "secret-get-value", sec.libvirt_secret_uuid, check=False)
    if not current.ok or current.stdout.strip() != key:
        # The value goes through a 0600 file, never the command line.
        tmp = f"/run/coa-libvirt-secret-{sec.libvirt_secret_uuid}.b64"
        target.put(tmp, key, 0o600)
        try:
            virsh(target, "secret-set-value", "--secret", sec.libvirt_secret_uuid, "--file", tmp)
        finally:
            target.run(["rm", "-f", tmp])
        done.append(f"set the value of libvirt secret {sec.libvirt_secret_uuid} (client.{settings.volume_pool} key)")
    return done


# --- addresses at provisioning time ------------------------------------------------------------
def provisioning_addresses(target: Target, settings: Settings, ip: str) -> Addresses:
    """The instance's addresses while provisioning: ``ip`` and the public name from the metadata the agent saved."""
    public = None
    try:
        data = json.loads(target.read(posixpath.join(settings.state_dir, "last-metadata.json")).decode())
        if data.get("local_ipv4") == ip:
            public = data.get("public_hostname")
    except (FileNotFoundError, json.JSONDecodeError):
        pass
    return Addresses(ip, public or ip)


# --- running the agent's API client on the target --------------------------------------------
def agent(target: Target, *args: str, timeout: int = 900) -> dict:
    """Run ``python3 -m provision.openstack_boot ARGS`` on the target; return the JSON it prints last."""
    from .paths import AGENT_DIR

    r = target.run(["env", f"PYTHONPATH={AGENT_DIR}", "timeout", "-k", "5", str(timeout), "python3", "-m", "provision.openstack_boot", *args], check=False)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise CommandFailed(target.name, r.command, r.exit_code, r.stdout, r.stderr)
    data = json.loads(lines[-1])
    if not r.ok and not data.get("error"):
        raise CommandFailed(target.name, r.command, r.exit_code, r.stdout, r.stderr)
    if data.get("error"):
        raise ProvisionError(f"{' '.join(args[:1])} on {target.name}: {data['error']}")
    return data


# --- provisioning steps ----------------------------------------------------------------------
def install_packages(target: Target, prof: OpenStackProfile) -> tuple[bool, str]:
    """Install the packages without recommends, no service started by maintainer scripts."""
    missing = missing_packages(target, prof.packages)
    if not missing:
        return False, f"{len(prof.packages)} packages installed"
    ours = not target.exists(POLICY_RC_D)
    if ours:
        target.put(POLICY_RC_D, POLICY_RC_D_TEXT, 0o755)
    try:
        apt_install(target, prof.packages, 1800)
    finally:
        if ours:
            target.run(["rm", "-f", POLICY_RC_D])
    return True, f"installed {len(missing)} missing of {len(prof.packages)} packages ({' '.join(missing[:5])}{' ...' if len(missing) > 5 else ''})"


def tune_services(target: Target, settings: Settings, prof: OpenStackProfile) -> tuple[bool, str]:
    """uWSGI inis and /etc/default files, MariaDB and RabbitMQ drop-ins, state dirs; unneeded units off."""
    changed = write_files(target, service_files(settings, prof))
    did = [posixpath.basename(f.path) for f in changed]
    target.run(["install", "-d", "-m", "0700", posixpath.join(settings.state_dir, "openstack")])
    if target.put(posixpath.join(settings.state_dir, PROFILE_NAME), prof.name + "\n", 0o644):
        did.append(f"recorded profile {prof.name}")
    for d, owner in (("/var/lib/glance/staging", "glance"), ("/var/lib/glance/tasks_work_dir", "glance")):
        if not target.exists(d):
            target.run(["install", "-d", "-o", owner, "-g", owner, "-m", "0750", d])
            did.append(d)
    enabled = [u for u in prof.unneeded_units if unit_enabled(target, u)]
    if enabled:
        target.run(["systemctl", "disable", "--quiet", "--now", *enabled], check=False)
        did.append("disabled " + " ".join(enabled))
    failed = [u for u in prof.unneeded_units if target.run(["systemctl", "is-failed", "--quiet", u], check=False).ok]
    if failed:  # one that failed before it was disabled (nvmf-autoconnect without the nvme-fabrics module) leaves systemd "degraded"
        target.run(["systemctl", "reset-failed", *failed], check=False)
        did.append("cleared the failed state of " + " ".join(failed))
    if any(f.path.startswith("/etc/systemd/system/") for f in changed):
        target.run(["systemctl", "daemon-reload"])
    if any(f.path.startswith("/etc/systemd/system/libvirtd.socket.d/") for f in changed):
        # A socket cannot be restarted under its running service: stop both, start the socket
        # (libvirtd starts again on the first connection).
        target.run(bounded(["systemctl", "stop", prof.libvirt_unit, "libvirtd.socket"], 120), check=False)
        target.run(bounded(["systemctl", "start", "libvirtd.socket"], 60))
    restarted = restart_if_active(target, units_of(changed))
    if restarted:
        did.append("restarted " + " ".join(restarted))
    return (True, "; ".join(did)) if did else (False, "service tuning in place")


def start_infrastructure(target: Target, settings: Settings, prof: OpenStackProfile) -> tuple[bool, str]:
    """MariaDB and RabbitMQ enabled and running."""
    did = ensure_running(target, [prof.database_unit, prof.broker_unit])
    wait_mysql(target)
    wait_rabbit(target)
    return (True, "; ".join(did)) if did else (False, f"{prof.database_unit} and {prof.broker_unit} running")


def ensure_secrets(target: Target, settings: Settings) -> tuple[bool, str]:
    """Generate this host's secrets when it has none (the boot agent renews them per instance)."""
    try:
        text = target.read(secrets_path(settings)).decode()
    except FileNotFoundError:
        text = None
    if text is not None:
        sec = Secrets.from_json(text, complete=True)
        if save_secrets(target, settings, sec):
            return True, f"added the secrets this version needs to {secrets_path(settings)} (others kept)"
        return False, f"{secrets_path(settings)} present"
    save_secrets(target, settings, Secrets.generate())
    return True, f"generated {secrets_path(settings)} (root, 0600)"


def database_step(target: Target, settings: Settings) -> tuple[bool, str]:
    """Databases and users with this host's passwords."""
    did = ensure_database(target, settings, require_secrets(target, settings))
    return (True, "; ".join(did)) if did else (False, "databases keystone, glance, cinder and their users current")


def broker_step(target: Target, settings: Settings) -> tuple[bool, str]:
    """The RabbitMQ user with this host's password; no guest."""
    did = ensure_rabbit(target, require_secrets(target, settings))
    return (True, "; ".join(did)) if did else (False, f"RabbitMQ user {RABBIT_USER} current, no other user")


def config_step(target: Target, settings: Settings, prof: OpenStackProfile, ip: str) -> tuple[bool, str]:
    """keystone.conf, glance-api.conf, cinder.conf and /root/openrc for this host's secrets and addresses."""
    addrs = provisioning_addresses(target, settings, ip)
    changed = write_configs(target, settings, prof, require_secrets(target, settings), addrs)
    restarted = restart_if_active(target, units_of(changed))
    if not changed:
        return False, f"configuration current (public {addrs.public_host}, private {addrs.private_ip})"
    detail = "wrote " + ", ".join(f.path for f in changed)
    return True, detail + (f"; restarted {' '.join(restarted)}" if restarted else "")


def db_sync_step(target: Target, settings: Settings, prof: OpenStackProfile) -> tuple[bool, str]:
    """Create the schemas of empty databases (as each service's user)."""
    neutron_conf = ["--config-file", "/etc/neutron/neutron.conf", "--config-file", "/etc/neutron/plugins/ml2/ml2_conf.ini"]
    commands: dict[str, list[tuple[str, list[str]]]] = {
        "keystone": [("keystone", ["keystone-manage", "db_sync"])],
        "glance": [("glance", ["glance-manage", "db_sync"])],
        "cinder": [("cinder", ["cinder-manage", "db", "sync"])],
        "placement": [("placement", ["placement-manage", "db", "sync"])],
        # The API database, then the cell mappings (cell0 and cell1), then every cell's schema.
        "nova_api": [("nova", ["nova-manage", "api_db", "sync"]), ("nova", ["nova-manage", "cell_v2", "map_cell0"])],
        "nova": [("nova", ["sh", "-c", "nova-manage cell_v2 list_cells | grep -q ' cell1 ' || nova-manage cell_v2 create_cell --name cell1"]),
                 ("nova", ["nova-manage", "db", "sync"])],
        "nova_cell0": [],  # made by `nova-manage db sync`
        "neutron": [("neutron", ["neutron-db-manage", *neutron_conf, "upgrade", "heads"])],
    }
    did = []
    for db, _, _ in DATABASES:
        if commands[db] and table_count(target, db) == 0:
            for user, argv in commands[db]:
                manage(target, user, argv, 900)
            did.append(f"{db} schema created")
    cells = ensure_cell_templates(target)
    if cells:
        restart_if_active(target, list(prof.nova_units))  # they cache the mappings
    did += cells
    return (True, "; ".join(did)) if did else (False, "schemas of " + ", ".join(db for db, _, _ in DATABASES) + " exist")


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


def keystone_step(target: Target, settings: Settings, prof: OpenStackProfile) -> tuple[bool, str]:
    """Fernet and credential keys, the bootstrap (admin, roles, region); Keystone running, admin authenticates."""
    sec = require_secrets(target, settings)
    did = []
    for repo in KEY_REPOSITORIES:
        if not key_repository_ready(target, repo):
            new_key_repository(target, repo)
            did.append(f"new keys in {repo}")
    admin = mysql(target, "SELECT COUNT(*) FROM keystone.local_user WHERE name = 'admin';\n").stdout.strip()
    if admin == "0":
        keystone_bootstrap(target, settings, sec.admin_password)
        did.append("bootstrapped (admin, roles, region)")
    if did:
        restart_if_active(target, [prof.keystone_unit])
    did += ensure_running(target, [prof.keystone_unit])
    state = agent(target, "admin-check", "--reset")
    if state.get("changed"):
        did.append(str(state.get("detail")))
    return (True, "; ".join(did)) if did else (False, "keys present, admin authenticates, Keystone running")


def catalog_step(target: Target, settings: Settings, ip: str) -> tuple[bool, str]:
    """Service project, service users and their roles, services and endpoints (through the API on the host)."""
    addrs = provisioning_addresses(target, settings, ip)
    r = agent(target, "keystone-resources", "--private-ip", addrs.private_ip, "--public-host", addrs.public_host)
    return bool(r.get("changed")), str(r.get("detail", ""))


def services_step(target: Target, settings: Settings, prof: OpenStackProfile) -> tuple[bool, str]:
    """Glance, Cinder and libvirt enabled and running; the APIs answer (Nova, Neutron: :func:`compute_step`)."""
    did = ensure_running(target, [prof.libvirt_unit, prof.glance_unit, *prof.cinder_units])
    agent(target, "wait-apis")
    return (True, "; ".join(did)) if did else (False, "glance, cinder and libvirt running; APIs answer")


def libvirt_step(target: Target, settings: Settings) -> tuple[bool, str]:
    """The libvirt secret holding client.volumes' key under this host's uuid."""
    sec = require_secrets(target, settings)
    did = ensure_libvirt_secret(target, settings, sec)
    return (True, "; ".join(did)) if did else (False, f"libvirt secret {sec.libvirt_secret_uuid} holds the client.{settings.volume_pool} key")


def guest_step(target: Target, settings: Settings) -> tuple[bool, str]:
    """Build the small bootable guest offline and register it in Glance (once)."""
    name = settings.openstack.guest_image_name
    found = agent(target, "image-status", "--name", name)
    if found.get("id"):
        return False, f"image {name} is {found['id']} (active)"
    from .image import guest

    path, detail = guest.build(target, settings)
    try:
        r = agent(target, "register-image", "--name", name, "--file", path, "--description", guest.DESCRIPTION)
    finally:
        guest.clean(target)
    return True, f"{detail}; registered as image {r.get('id')} in pool {settings.image_pool}"


def nova_host_mapped(target: Target, settings: Settings) -> bool:
    """True when Nova's cell mappings know this compute host."""
    r = target.run(bounded(["runuser", "-u", "nova", "--", "nova-manage", "cell_v2", "list_hosts"], 120), check=False)
    return r.ok and f" {settings.hostname} " in r.stdout


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
    return (True, "; ".join(did + [detail])) if did else (False, detail)


def network_step(target: Target, settings: Settings) -> tuple[bool, str]:
    """The guests' flat network with DHCP, and the demo flavor (through the API on the host)."""
    r = agent(target, "network")
    return bool(r.get("changed")), str(r.get("detail", ""))


#: Apache sites of the packages that the dashboard site replaces (the default page, TLS with a
#: snakeoil certificate, the dashboard under /horizon).
PACKAGE_SITES = ("000-default", "default-ssl", "openstack-dashboard-alias-only", "openstack-dashboard", "openstack-dashboard-ssl", "openstack-dashboard-ssl-redirect")


def dashboard_login_url(settings: Settings) -> str:
    """The dashboard's login page, on the instance itself."""
    return f"http://127.0.0.1:{settings.openstack.dashboard_port}/auth/login/"


def dashboard_status(target: Target, settings: Settings) -> str:
    """The HTTP status of the dashboard's login page ("000" or "" when nothing answers)."""
    probe = "curl -s -o /dev/null -w '%%{http_code}' --max-time 20 %s"
    return target.run(probe, dashboard_login_url(settings), check=False).stdout.strip()


COMPRESS_STAMP = "/var/lib/openstack-dashboard/static/.ceph-openstack-ami-compressed"
COMPRESS_STAMP_TEXT = "WEBROOT=/"


def dashboard_step(target: Target, settings: Settings, prof: OpenStackProfile) -> tuple[bool, str]:
    """The dashboard at ``/`` (Apache, our site only) running; its login page answers."""
    did = []
    enabled = target.run("ls /etc/apache2/sites-enabled/ 2>/dev/null", check=False).stdout.split()
    drop = [site for site in PACKAGE_SITES if f"{site}.conf" in enabled]
    if drop:
        target.run(["a2dissite", "-q", *drop])
        did.append("disabled sites " + " ".join(drop))
    if "coa-dashboard.conf" not in enabled:
        target.run(["a2ensite", "-q", "coa-dashboard"])
        did.append("enabled site coa-dashboard")
    # The package compressed its pages for /horizon; at / their keys differ: compress again (once).
    if target.run(["grep", "-qx", COMPRESS_STAMP_TEXT, COMPRESS_STAMP], check=False).exit_code != 0:
        target.run("cd /usr/share/openstack-dashboard && timeout -k 5 600 python3 manage.py compress --force >/dev/null 2>&1")
        target.put(COMPRESS_STAMP, COMPRESS_STAMP_TEXT + "\n", 0o644)
        did.append("compressed the dashboard's static files for /")
    if did:
        restart_if_active(target, [prof.dashboard_unit])
    did += ensure_running(target, [prof.dashboard_unit])
    url = dashboard_login_url(settings)
    wait_for(f"the dashboard to answer at {url}", lambda: dashboard_status(target, settings) == "200", 180, 2.0)
    return (True, "; ".join(did)) if did else (False, f"dashboard answers at {url}")


def steps(settings: Settings, profile_name: str, ip: str) -> list[Step]:
    """The provisioning steps, after the Ceph steps, for the instance at ``ip`` (its private IPv4)."""
    prof = profile(profile_name)
    return [
        FnStep("openstack.packages", lambda t, s: install_packages(t, prof)),
        FnStep("openstack.tuning", lambda t, s: tune_services(t, s, prof)),
        FnStep("openstack.infrastructure", lambda t, s: start_infrastructure(t, s, prof)),
        FnStep("openstack.secrets", ensure_secrets),
        FnStep("openstack.database", database_step),
        FnStep("openstack.broker", broker_step),
        FnStep("openstack.config", lambda t, s: config_step(t, s, prof, ip)),
        FnStep("openstack.db-sync", lambda t, s: db_sync_step(t, s, prof)),
        FnStep("openstack.keystone", lambda t, s: keystone_step(t, s, prof)),
        FnStep("openstack.catalog", lambda t, s: catalog_step(t, s, ip)),
        FnStep("openstack.libvirt-secret", libvirt_step),
        FnStep("openstack.services", lambda t, s: services_step(t, s, prof)),
        FnStep("openstack.guest-image", guest_step),
        FnStep("openstack.compute", lambda t, s: compute_step(t, s, prof)),
        FnStep("openstack.network", network_step),
        FnStep("openstack.dashboard", lambda t, s: dashboard_step(t, s, prof)),
    ]
