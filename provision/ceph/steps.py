"""Ceph: install the distribution's packages and bootstrap a one-host cluster, without cephadm.

One monitor (``mon.a``), one manager (``mgr.x``), N BlueStore OSDs backed by sparse
files on the instance's disk, run by the distribution's own systemd units
(``ceph-mon@a``, ``ceph-mgr@x``, ``ceph-osd@N``, enabled under ``ceph.target`` so they
start at boot). Pools for Cinder and Glance, and their cephx users with keyrings
readable by the service groups.

Every step is idempotent and says what it found: provisioning twice changes nothing
the second time. Every ``ceph``/``rbd`` call is bounded (``--connect-timeout`` and
``timeout``): none can hang when no monitor answers.

Stdlib only: the boot jobs (:mod:`provision.ceph_boot`) import these helpers on the
instance under Debian's ``/usr/bin/python3``.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from . import conf as cephconf
from ..exceptions import CephNotHealthy, CommandFailed, ConfigError, DiskFull, ProvisionError
from ..settings import CephSettings, Settings
from ..steps import FnStep, Step, apt_install, missing_packages
from ..target import Result, Target

#: Seconds any single ceph/rbd/ceph-mon command may run before it is killed.
COMMAND_TIMEOUT_S = 120
#: Free space kept on the OSD filesystem beyond the OSD files themselves.
DISK_RESERVE_BYTES = 2 * 1024**3
#: The daemons' user and group, created by the packages.
CEPH_USER = "ceph"


@dataclass(frozen=True)
class CephProfile:
    """What differs between distributions for Ceph (today: only the release they ship)."""

    name: str
    release: str
    packages: tuple[str, ...] = (
        "ceph-mon",
        "ceph-mgr",
        "ceph-osd",
        "ceph-common",
        "python3-rbd",
        "python3-rados",
    )


PROFILES: dict[str, CephProfile] = {
    "debian-12": CephProfile("debian-12", "16.2 pacific"),
    "ubuntu-24.04": CephProfile("ubuntu-24.04", "19.2 squid"),
}


def profile(name: str) -> CephProfile:
    """The Ceph profile of a distribution; ConfigError naming the valid ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"Unknown distribution profile {name!r}", hint=f"use one of: {', '.join(PROFILES)}") from None


@dataclass(frozen=True)
class Client:
    """A cephx client user for an OpenStack service, its caps and the group that reads its keyring."""

    entity: str
    caps: tuple[tuple[str, str], ...]
    group: str


def clients(settings: Settings) -> tuple[Client, ...]:
    """The cephx users Cinder and Glance use (``client.volumes``, ``client.images``) and ceph-crash's."""
    vol, img = settings.volume_pool, settings.image_pool
    return (
        Client(
            f"client.{vol}",
            (("mon", "profile rbd"), ("osd", f"profile rbd pool={vol}, profile rbd-read-only pool={img}")),
            "cinder",
        ),
        Client(f"client.{img}", (("mon", "profile rbd"), ("osd", f"profile rbd pool={img}")), "glance"),
        # ceph-crash drops to the ceph user and posts crash reports as client.crash.
        Client("client.crash", (("mon", "profile crash"), ("mgr", "profile crash")), CEPH_USER),
    )


#: Service accounts whose group reads a client keyring; the OpenStack packages installed later reuse them.
SERVICE_ACCOUNTS: tuple[str, ...] = ("cinder", "glance")

MGR_CAPS = (("mon", "allow profile mgr"), ("osd", "allow *"), ("mds", "allow *"))
ADMIN_CAPS = (("mon", "allow *"), ("osd", "allow *"), ("mds", "allow *"), ("mgr", "allow *"))

#: The packaged units ask for 1048576 open files and processes. systemd can set a hard
#: limit above its own only with CAP_SYS_RESOURCE; where it lacks it (containers, some
#: hardened hosts) the daemons do not start at all ("Failed to adjust resource limit").
#: A one-host cluster of a few OSDs uses a few hundred descriptors and threads; these
#: values are ample for it and valid everywhere.
UNIT_LIMITS_DROPIN = (
    "# Managed by ceph-openstack-ami (provision/ceph.py).\n"
    "# The packaged 1048576 exceeds the hard limit of hosts without CAP_SYS_RESOURCE;\n"
    "# a one-host cluster of a few OSDs needs far less.\n"
    "[Service]\n"
    "LimitNOFILE=16384\n"
    "LimitNPROC=16384\n"
)
DROPIN_UNITS = ("ceph-mon@.service", "ceph-mgr@.service", "ceph-osd@.service")
DROPIN_NAME = "coa-limits.conf"


# --- paths ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Paths:
    """Where the cluster's files live (Debian and Ubuntu agree)."""

    cluster: str
    mon_id: str
    mgr_id: str

    @property
    def conf(self) -> str:
        return f"/etc/ceph/{self.cluster}.conf"

    def keyring(self, entity: str) -> str:
        """``/etc/ceph/ceph.client.NAME.keyring`` for clients, the data dir's keyring for daemons."""
        kind, _, ident = entity.partition(".")
        if kind in ("mon", "mgr", "osd"):
            return f"/var/lib/ceph/{kind}/{self.cluster}-{ident or self.mon_id}/keyring"
        return f"/etc/ceph/{self.cluster}.{entity}.keyring"

    @property
    def admin_keyring(self) -> str:
        return self.keyring("client.admin")

    @property
    def mon_dir(self) -> str:
        return f"/var/lib/ceph/mon/{self.cluster}-{self.mon_id}"

    @property
    def mgr_dir(self) -> str:
        return f"/var/lib/ceph/mgr/{self.cluster}-{self.mgr_id}"

    def osd_dir(self, osd_id: int) -> str:
        return f"/var/lib/ceph/osd/{self.cluster}-{osd_id}"

    @property
    def tmp_dir(self) -> str:
        return "/var/lib/ceph/tmp"


def paths(settings: Settings) -> Paths:
    """The paths of the cluster described by ``settings``."""
    c = settings.ceph
    return Paths(c.cluster, c.mon_id, c.mgr_id)


# --- bounded commands ----------------------------------------------------------------
def bounded(argv: list[str], seconds: int = COMMAND_TIMEOUT_S) -> list[str]:
    """Wrap ``argv`` in ``timeout`` so it is killed (exit 124) after ``seconds``."""
    return ["timeout", "-k", "5", str(seconds), *argv]


def ceph_argv(cs: CephSettings, *args: str, keyring: str | None = None, name: str | None = None) -> list[str]:
    """``ceph`` with the cluster, a connect timeout and an overall timeout."""
    argv = ["ceph", "--cluster", cs.cluster, "--connect-timeout", str(cs.connect_timeout_s)]
    if name:
        argv += ["--name", name]
    if keyring:
        argv += ["--keyring", keyring]
    return bounded(argv + list(args), cs.connect_timeout_s + COMMAND_TIMEOUT_S)


def ceph(
    target: Target,
    settings: Settings,
    *args: str,
    check: bool = True,
    stdin: str | bytes | None = None,
    keyring: str | None = None,
) -> Result:
    """Run a bounded ``ceph`` command as client.admin."""
    return target.run(ceph_argv(settings.ceph, *args, keyring=keyring), check=check, stdin=stdin)


def ceph_json(target: Target, settings: Settings, *args: str, keyring: str | None = None) -> Any:
    """Run a bounded ``ceph ... -f json`` and parse its output."""
    out = ceph(target, settings, *args, "-f", "json", keyring=keyring).stdout
    try:
        return json.loads(out) if out.strip() else None
    except json.JSONDecodeError as e:
        raise ProvisionError(f"`ceph {' '.join(args)}` printed no JSON: {out[:200]!r}") from e


def rbd(target: Target, settings: Settings, *args: str, check: bool = True) -> Result:
    """Run a bounded ``rbd`` command as client.admin (rbd has no --connect-timeout; timeout bounds it)."""
    cs = settings.ceph
    argv = ["rbd", "--cluster", cs.cluster, "--client-mount-timeout", str(cs.connect_timeout_s), *args]
    return target.run(bounded(argv), check=check)


# --- small facts about the host ------------------------------------------------------
def interface_network(target: Target, ip: str) -> str:
    """The CIDR of the interface that holds ``ip`` (``ip -o -4 addr show``).

    Raises:
        ConfigError: no interface holds ``ip``.
    """
    out = target.run(["ip", "-o", "-4", "addr", "show"]).stdout
    network = cephconf.network_of(out, ip)
    if network is None:
        raise ConfigError(
            f"No interface of {target.name} holds {ip}",
            hint="pass the instance's private IPv4 (metadata local-ipv4); the monitor can only bind a local address",
        )
    return network


def unit_enabled(target: Target, unit: str) -> bool:
    """True when ``systemctl is-enabled`` says enabled."""
    return target.run(["systemctl", "is-enabled", "--quiet", unit], check=False).ok


def ensure_running(target: Target, units: list[str]) -> list[str]:
    """Enable and start ``units``; return what had to be done (empty when nothing)."""
    done = []
    to_enable = [u for u in units if not unit_enabled(target, u)]
    if to_enable:
        target.run(["systemctl", "enable", "--quiet", *to_enable])
        done.append("enabled " + " ".join(to_enable))
    to_start = [u for u in units if not u.endswith(".target") and not target.service_active(u)]
    if to_start:
        target.run(["systemctl", "start", *to_start])
        done.append("started " + " ".join(to_start))
    return done


def _ceph_version(target: Target) -> str:
    r = target.run(["ceph", "--version"], check=False)
    return r.stdout.split(" (")[0].replace("ceph version ", "") if r.ok else "?"


def gen_key(target: Target) -> str:
    """A fresh cephx secret from ``ceph-authtool --gen-print-key`` (never leaves the target's output)."""
    return target.run(["ceph-authtool", "--gen-print-key"]).stdout.strip()


def auth_get(target: Target, settings: Settings, entity: str) -> dict[str, Any] | None:
    """``ceph auth get ENTITY -f json`` as ``{"entity", "key", "caps"}``, or None when absent."""
    r = ceph(target, settings, "auth", "get", entity, "-f", "json", check=False)
    if not r.ok:
        if "ENOENT" in r.stderr or "failed to find" in r.stderr or r.exit_code == 2:
            return None
        raise CommandFailed(target.name, r.command, r.exit_code, r.stdout, r.stderr)
    data = json.loads(r.stdout)
    return data[0] if isinstance(data, list) and data else None


def ensure_auth(target: Target, settings: Settings, entity: str, caps: tuple[tuple[str, str], ...]) -> tuple[str, str]:
    """Make ``entity`` exist with exactly ``caps``; return (what was done or "", its keyring text)."""
    want = dict(caps)
    flat = [x for kv in caps for x in kv]
    cur = auth_get(target, settings, entity)
    done = ""
    if cur is None:
        ceph(target, settings, "auth", "get-or-create", entity, *flat)
        done = f"created {entity}"
    elif cur.get("caps", {}) != want:
        ceph(target, settings, "auth", "caps", entity, *flat)
        done = f"set caps of {entity}"
    keyring = ceph(target, settings, "auth", "get", entity).stdout
    return done, keyring


def replace_key(keyring_text: str, key: str) -> str:
    """Return a keyring text with every ``key = ...`` line carrying ``key`` (caps and layout kept)."""
    new, n = re.subn(r"(?m)^([ \t]*key[ \t]*=[ \t]*)\S+[ \t]*$", lambda m: m.group(1) + key, keyring_text)
    if n == 0:
        raise ProvisionError("The keyring has no `key =` line")
    return new if new.endswith("\n") else new + "\n"  # Ceph refuses a keyring without the final newline


# --- health --------------------------------------------------------------------------
def health(target: Target, settings: Settings) -> dict[str, Any]:
    """The parsed ``ceph -s -f json``: ``["health"]["status"]`` is ``HEALTH_OK``/``_WARN``/``_ERR``.

    Raises:
        CommandFailed: no monitor answered within the connect timeout.
    """
    data = ceph_json(target, settings, "-s")
    if not isinstance(data, dict):
        raise ProvisionError("`ceph -s` printed no status")
    return data


def health_summary(status: dict[str, Any]) -> str:
    """``HEALTH_WARN: OSD_DOWN (1 osds down); ...`` from a ``ceph -s`` dict."""
    h = status.get("health", {})
    checks = h.get("checks", {})
    parts = [f"{name} ({c.get('summary', {}).get('message', '')})" for name, c in checks.items()]
    return h.get("status", "?") + (": " + "; ".join(parts) if parts else "")


def settled(status: dict[str, Any]) -> tuple[bool, str]:
    """Whether a ``ceph -s`` dict shows a cluster that is really up, and if not, why.

    HEALTH_OK alone can be stale right after a restart (the monitor still shows the PG
    states the last manager reported), so this also asks for an available manager,
    every OSD up and in, and every PG ``active+clean``.
    """
    h = status.get("health", {}).get("status", "?")
    if h != "HEALTH_OK":
        return False, health_summary(status)
    if not status.get("mgrmap", {}).get("available", False):
        return False, "HEALTH_OK but no manager available yet"
    o = status.get("osdmap", {})
    o = o.get("osdmap", o)
    n = int(o.get("num_osds", 0))
    if n == 0 or int(o.get("num_up_osds", 0)) < n or int(o.get("num_in_osds", 0)) < n:
        return False, f"HEALTH_OK but {o.get('num_up_osds', 0)}/{n} OSDs up, {o.get('num_in_osds', 0)} in"
    pg = status.get("pgmap", {})
    clean = sum(int(s.get("count", 0)) for s in pg.get("pgs_by_state", []) if s.get("state_name") == "active+clean")
    if clean < int(pg.get("num_pgs", 0)):
        return False, f"HEALTH_OK but {clean}/{pg.get('num_pgs')} PGs active+clean"
    return True, "HEALTH_OK"


def daemons_current(target: Target, settings: Settings) -> tuple[bool, str]:
    """Whether the maps describe the daemons running now, not their predecessors before a restart.

    Asks the local daemons over their admin sockets (no network, bounded): the manager's
    gid must be the map's active gid, and every OSD must say it is ``active``.
    """
    c = settings.ceph
    daemon = ["ceph", "--cluster", c.cluster, "daemon"]
    r = target.run(bounded([*daemon, f"mgr.{c.mgr_id}", "status"], 15), check=False)
    if not r.ok:
        return False, f"mgr.{c.mgr_id} does not answer on its admin socket yet"
    gid = json.loads(r.stdout).get("inst", {}).get("name", {}).get("num")
    m = ceph(target, settings, "mgr", "dump", "-f", "json", check=False)
    if not m.ok or json.loads(m.stdout).get("active_gid") != gid:
        return False, f"the manager map does not show the running mgr.{c.mgr_id} (gid {gid}) as active yet"
    osd_map: dict[int, Any] | None = None
    for i in range(c.osd_count):
        r = target.run(bounded([*daemon, f"osd.{i}", "status"], 15), check=False)
        state = json.loads(r.stdout).get("state") if r.ok else "not answering"
        if state == "active":
            continue
        # An OSD can go on reporting "booting" on its admin socket after the map shows it up;
        # it is current when the map's entry for it is up with the running process's nonce (its pid).
        if osd_map is None:
            d = ceph(target, settings, "osd", "dump", "-f", "json", check=False)
            osd_map = {o["osd"]: o for o in json.loads(d.stdout).get("osds", [])} if d.ok else {}
        entry = osd_map.get(i, {})
        pid = target.run(["systemctl", "show", "-p", "MainPID", "--value", f"ceph-osd@{i}"], check=False).stdout.strip()
        nonces = {str(a.get("nonce")) for a in entry.get("public_addrs", {}).get("addrvec", [])}
        if not (state == "booting" and entry.get("up") == 1 and pid in nonces):
            return False, f"osd.{i} is {state}"
    return True, "daemons current"


def wait_healthy(
    target: Target,
    settings: Settings,
    timeout: float = 300,
    interval: float = 2.0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Wait until the cluster is HEALTH_OK for real; return the ``ceph -s`` status.

    Real means :func:`settled` (manager available, OSDs up and in, PGs active+clean)
    and :func:`daemons_current` (the maps show the daemons running now): right after a
    reboot the monitor repeats the previous boot's HEALTH_OK for several seconds.

    Raises:
        CephNotHealthy: not HEALTH_OK within ``timeout`` seconds (names the checks still failing).
    """
    deadline = time.monotonic() + timeout
    last = "no monitor answered"
    shown = ""
    while True:
        try:
            status = health(target, settings)
            ok, last = settled(status)
            if ok:
                ok, why = daemons_current(target, settings)
                if ok:
                    return status
                last = f"HEALTH_OK but {why}"
        except (CommandFailed, ProvisionError) as e:
            last = f"no answer from the monitor ({str(e).splitlines()[0]})"
        if log and last != shown:
            log(f"waiting for HEALTH_OK: {last}")
            shown = last
        if time.monotonic() >= deadline:
            c = settings.ceph
            raise CephNotHealthy(
                f"Ceph is not HEALTH_OK after {timeout:.0f}s: {last}",
                hint=f"look at `ceph -s` and `journalctl -u ceph-mon@{c.mon_id} -u ceph-mgr@{c.mgr_id} -u 'ceph-osd@*'`",
            )
        time.sleep(interval)


def wait_for(
    what: str, probe: Callable[[], bool], timeout: float = COMMAND_TIMEOUT_S, interval: float = 1.0
) -> float:
    """Poll ``probe`` until it returns True; return the seconds waited, CephNotHealthy after ``timeout``."""
    start = time.monotonic()
    while not probe():
        if time.monotonic() - start > timeout:
            raise CephNotHealthy(f"Timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - start


def mon_answers(target: Target, settings: Settings) -> bool:
    """True when the monitor answers ``ceph mon dump`` within the connect timeout."""
    return ceph(target, settings, "mon", "dump", "-f", "json", check=False).ok


def osds_up(target: Target, settings: Settings, count: int) -> bool:
    """True when at least ``count`` OSDs are up and in."""
    r = ceph(target, settings, "osd", "stat", "-f", "json", check=False)
    if not r.ok:
        return False
    s = json.loads(r.stdout)
    s = s.get("osdmap", s)  # older releases nest the counters
    return int(s.get("num_up_osds", 0)) >= count and int(s.get("num_in_osds", 0)) >= count


# --- steps ---------------------------------------------------------------------------
def install_packages(target: Target, prof: CephProfile) -> tuple[bool, str]:
    """Install the Ceph packages (no recommends); ``apt-get update`` only when the lists are missing or stale."""
    missing = missing_packages(target, prof.packages)
    if not missing:
        return False, f"installed: ceph {_ceph_version(target)}"
    updated = apt_install(target, prof.packages, 1200)
    return True, f"installed {' '.join(missing)} (ceph {_ceph_version(target)}){' after apt-get update' if updated else ''}"


def ensure_unit_limits(target: Target) -> tuple[bool, str]:
    """Write the limits drop-in for the mon/mgr/osd units (see :data:`UNIT_LIMITS_DROPIN`)."""
    changed = [u for u in DROPIN_UNITS if target.put(f"/etc/systemd/system/{u}.d/{DROPIN_NAME}", UNIT_LIMITS_DROPIN, 0o644)]
    if not changed:
        return False, "limits drop-ins in place"
    target.run(["systemctl", "daemon-reload"])
    return True, f"wrote {DROPIN_NAME} for {', '.join(changed)}"


def ensure_service_accounts(target: Target) -> tuple[bool, str]:
    """Create the system groups and users ``cinder`` and ``glance`` when absent."""
    made = []
    for name in SERVICE_ACCOUNTS:
        if not target.run(["getent", "group", name], check=False).ok:
            target.run(["groupadd", "--system", name])
            made.append(f"group {name}")
        if not target.run(["getent", "passwd", name], check=False).ok:
            target.run(
                ["useradd", "--system", "--gid", name, "--home-dir", f"/var/lib/{name}", "--no-create-home",
                 "--shell", "/usr/sbin/nologin", "--comment", f"OpenStack {name}", name]
            )
            made.append(f"user {name}")
    return (True, "created " + ", ".join(made)) if made else (False, f"{', '.join(SERVICE_ACCOUNTS)} exist")


def write_conf(target: Target, settings: Settings, ip: str) -> tuple[bool, str]:
    """Render ceph.conf for ``ip``; keep the fsid of an existing conf (a new cluster gets a new one)."""
    p = paths(settings)
    try:
        old = target.read(p.conf).decode()
    except FileNotFoundError:
        old = ""
    fsid = cephconf.get_option(old, "fsid") if old else None
    is_new = not fsid
    if is_new and target.exists(f"{p.mon_dir}/done"):
        raise ProvisionError(
            f"{p.conf} has no fsid but a monitor exists in {p.mon_dir}",
            hint="restore ceph.conf, or remove /var/lib/ceph/mon to bootstrap a new cluster",
        )
    c = settings.ceph
    text = cephconf.render_ceph_conf(
        fsid=fsid or str(uuid.uuid4()),
        ip=ip,
        network=interface_network(target, ip),
        mon_id=c.mon_id,
        osd_memory_target_mib=c.osd_memory_target_mib,
        osd_size_gib=c.osd_size_gib,
    )
    if not target.put(p.conf, text, 0o644):
        return False, f"{p.conf} up to date"
    return True, f"wrote {p.conf}" + (" (new fsid)" if is_new else "")


def bootstrap_mon(target: Target, settings: Settings, ip: str) -> tuple[bool, str]:
    """Create mon.a (mkfs) and client.admin, or re-address an existing monitor; enable and start it."""
    p = paths(settings)
    c = settings.ceph
    did = []
    unit = f"ceph-mon@{c.mon_id}"
    if not target.exists(f"{p.mon_dir}/done"):
        fsid = cephconf.get_option(target.read(p.conf).decode(), "fsid")
        if not fsid:
            raise ProvisionError(f"{p.conf} has no fsid; write the conf first")
        tmp_keyring = f"{p.tmp_dir}/coa-mon.keyring"
        tmp_monmap = f"{p.tmp_dir}/coa-monmap"
        target.run(["install", "-d", "-o", CEPH_USER, "-g", CEPH_USER, "-m", "0750", p.tmp_dir])
        target.run(["rm", "-rf", p.mon_dir, tmp_keyring, tmp_monmap])  # a half-made monitor from a crash
        target.run(["ceph-authtool", "--create-keyring", tmp_keyring, "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"])
        if not target.exists(p.admin_keyring):
            caps = [x for kv in ADMIN_CAPS for x in ("--cap", *kv)]
            target.run(["ceph-authtool", "--create-keyring", p.admin_keyring + ".new", "--gen-key", "-n", "client.admin", *caps])
            target.run(["chmod", "0600", p.admin_keyring + ".new"])
            target.run(["mv", "-f", p.admin_keyring + ".new", p.admin_keyring])
            did.append("created client.admin")
        target.run(["ceph-authtool", tmp_keyring, "--import-keyring", p.admin_keyring])
        target.run(["chown", f"{CEPH_USER}:{CEPH_USER}", tmp_keyring])
        vec = cephconf.mon_addrvec(ip)
        target.run(["monmaptool", "--create", "--clobber", "--addv", c.mon_id, vec, "--fsid", fsid, tmp_monmap])
        target.run(["install", "-d", "-o", CEPH_USER, "-g", CEPH_USER, "-m", "0750", p.mon_dir])
        target.run(
            bounded(["ceph-mon", "--cluster", c.cluster, "--mkfs", "-i", c.mon_id, "--monmap", tmp_monmap,
                     "--keyring", tmp_keyring, "--setuser", CEPH_USER, "--setgroup", CEPH_USER])
        )
        target.run(["rm", "-f", tmp_keyring, tmp_monmap])
        target.put(f"{p.mon_dir}/done", "", 0o644, CEPH_USER)
        did.insert(0, f"created mon.{c.mon_id} at {vec}")
    else:
        from .boot import readdress

        r = readdress(target, settings, ip, log=lambda _: None)  # its outcome is this step's detail
        if r.changed:
            did.append(r.detail)
    did += ensure_running(target, [unit, "ceph-mon.target", "ceph.target"])
    wait_for(f"mon.{c.mon_id} to answer", lambda: mon_answers(target, settings))
    return (True, "; ".join(did)) if did else (False, f"mon.{c.mon_id} running at {cephconf.mon_addrvec(ip)}")


def bootstrap_mgr(target: Target, settings: Settings) -> tuple[bool, str]:
    """Create mgr.x's key and data dir; enable and start it."""
    p = paths(settings)
    c = settings.ceph
    did = []
    target.run(["install", "-d", "-o", CEPH_USER, "-g", CEPH_USER, "-m", "0750", p.mgr_dir])
    done, keyring = ensure_auth(target, settings, f"mgr.{c.mgr_id}", MGR_CAPS)
    if done:
        did.append(done)
    if target.put(p.keyring(f"mgr.{c.mgr_id}"), keyring, 0o600, CEPH_USER):
        did.append("wrote its keyring")
    did += ensure_running(target, [f"ceph-mgr@{c.mgr_id}", "ceph-mgr.target"])
    return (True, "; ".join(did)) if did else (False, f"mgr.{c.mgr_id} running")


def osd_ready(target: Target, settings: Settings, osd_id: int) -> bool:
    """True when OSD ``osd_id``'s data dir was made (``ceph-osd --mkfs`` wrote ``ready``)."""
    return target.exists(f"{paths(settings).osd_dir(osd_id)}/ready")


def check_disk(target: Target, settings: Settings, new_osds: int) -> None:
    """Raise DiskFull unless the OSD filesystem can hold ``new_osds`` more OSD files plus a reserve."""
    if new_osds <= 0:
        return
    need = new_osds * settings.ceph.osd_size_gib * 1024**3 + DISK_RESERVE_BYTES
    target.run(["mkdir", "-p", "/var/lib/ceph/osd"])
    free = target.free_bytes("/var/lib/ceph/osd")
    if free < need:
        gib = 1024**3
        raise DiskFull(
            f"{target.name} has {free / gib:.1f} GiB free on /var/lib/ceph/osd; {new_osds} OSD(s) of "
            f"{settings.ceph.osd_size_gib} GiB need {need / gib:.1f} GiB (with a {DISK_RESERVE_BYTES // gib} GiB reserve)",
            hint="give the instance a larger root volume, or lower ceph.osd_size_gib / ceph.osd_count",
        )


def preflight_disk(target: Target, settings: Settings) -> tuple[bool, str]:
    """Before anything is installed: refuse (DiskFull) when the OSDs still to be made cannot fit."""
    missing = [i for i in range(settings.ceph.osd_count) if not osd_ready(target, settings, i)]
    check_disk(target, settings, len(missing))
    free = target.free_bytes("/var/lib/ceph/osd") / 1024**3
    return False, f"{free:.1f} GiB free for {len(missing)} new OSD(s) of {settings.ceph.osd_size_gib} GiB"


def bootstrap_osds(target: Target, settings: Settings) -> tuple[bool, str]:
    """Create the file-backed BlueStore OSDs that do not exist yet; enable and start all of them."""
    p = paths(settings)
    c = settings.ceph
    todo = [i for i in range(c.osd_count) if not osd_ready(target, settings, i)]
    check_disk(target, settings, len(todo))
    did = []
    for i in todo:
        d = p.osd_dir(i)
        # The uuid and secret are kept in the data dir before the cluster hears of them, so a
        # retry after a crash reuses them and `ceph osd new` sees the same OSD again.
        uuid_file, keyring_file = f"{d}/coa-osd-uuid", f"{d}/keyring"
        osd_uuid = target.read(uuid_file).decode().strip() if target.exists(uuid_file) else str(uuid.uuid4())
        secret = None
        if target.exists(keyring_file):
            m = re.search(r"key\s*=\s*(\S+)", target.read(keyring_file).decode())
            secret = m.group(1) if m else None
        secret = secret or gen_key(target)
        target.run(["rm", "-rf", d])
        target.run(["install", "-d", "-o", CEPH_USER, "-g", CEPH_USER, "-m", "0750", d])
        target.put(uuid_file, osd_uuid + "\n", 0o600, CEPH_USER)
        target.put(keyring_file, f"[osd.{i}]\n\tkey = {secret}\n", 0o600, CEPH_USER)
        secrets_file = f"{p.tmp_dir}/coa-osd-new.json"
        target.put(secrets_file, json.dumps({"cephx_secret": secret}), 0o600)
        try:
            r = ceph(target, settings, "osd", "new", osd_uuid, str(i), "-i", secrets_file)
        finally:
            target.run(["rm", "-f", secrets_file])
        if r.stdout.strip() != str(i):
            raise ProvisionError(f"`ceph osd new` gave id {r.stdout.strip()!r}, expected {i}")
        target.run(
            bounded(["ceph-osd", "--cluster", c.cluster, "-i", str(i), "--mkfs", "--osd-uuid", osd_uuid,
                     "--setuser", CEPH_USER, "--setgroup", CEPH_USER], 600)
        )
        did.append(f"created osd.{i} ({c.osd_size_gib} GiB sparse file)")
    units = [f"ceph-osd@{i}" for i in range(c.osd_count)] + ["ceph-osd.target"]
    did += ensure_running(target, units)
    wait_for(f"{c.osd_count} OSD(s) up and in", lambda: osds_up(target, settings, c.osd_count), timeout=180)
    return (True, "; ".join(did)) if did else (False, f"{c.osd_count} OSD(s) up")


def ensure_pools(target: Target, settings: Settings) -> tuple[bool, str]:
    """Create the RBD pools that are missing and initialise them for rbd (application tag)."""
    existing = set(ceph_json(target, settings, "osd", "pool", "ls") or [])
    did = []
    for pool in settings.ceph.pools:
        if pool not in existing:
            ceph(target, settings, "osd", "pool", "create", pool)
            did.append(f"created pool {pool}")
        apps = ceph_json(target, settings, "osd", "pool", "application", "get", pool) or {}
        if "rbd" not in apps:
            rbd(target, settings, "pool", "init", pool)
            did.append(f"rbd pool init {pool}")
    return (True, "; ".join(did)) if did else (False, f"pools {', '.join(settings.ceph.pools)} exist (rbd)")


def ensure_clients(target: Target, settings: Settings) -> tuple[bool, str]:
    """Create the cephx users with their caps; write their keyrings mode 0640 root:<service group>."""
    p = paths(settings)
    did = []
    for cl in clients(settings):
        done, keyring = ensure_auth(target, settings, cl.entity, cl.caps)
        if done:
            did.append(done)
        path = p.keyring(cl.entity)
        if target.put(path, keyring, 0o640, "root", cl.group):
            did.append(f"wrote {path}")
    names = ", ".join(cl.entity for cl in clients(settings))
    return (True, "; ".join(did)) if did else (False, f"{names} and their keyrings up to date")


def steps(settings: Settings, profile_name: str, ip: str) -> list[Step]:
    """The steps that install and bootstrap the cluster, monitor on ``ip`` (the target's primary IPv4).

    Raises:
        ConfigError: unknown profile, or ``ip`` is not an IPv4 address.
    """
    prof = profile(profile_name)
    cephconf.check_ipv4(ip)
    return [
        FnStep("ceph.disk", preflight_disk),
        FnStep("ceph.packages", lambda t, s: install_packages(t, prof)),
        FnStep("ceph.unit-limits", lambda t, s: ensure_unit_limits(t)),
        FnStep("ceph.service-accounts", lambda t, s: ensure_service_accounts(t)),
        FnStep("ceph.conf", lambda t, s: write_conf(t, s, ip)),
        FnStep("ceph.mon", lambda t, s: bootstrap_mon(t, s, ip)),
        FnStep("ceph.mgr", bootstrap_mgr),
        FnStep("ceph.osds", bootstrap_osds),
        FnStep("ceph.pools", ensure_pools),
        FnStep("ceph.clients", ensure_clients),
        FnStep("ceph.health", _health_step),
    ]


def _health_step(target: Target, settings: Settings) -> tuple[bool, str]:
    start = time.monotonic()
    wait_healthy(target, settings, timeout=300)
    return False, f"HEALTH_OK (waited {time.monotonic() - start:.1f}s)"
