"""Ceph: install the distribution's packages and bootstrap a one-host cluster, without cephadm.

One monitor (``mon.a``), one manager (``mgr.x``), N BlueStore OSDs backed by sparse
files on the instance's disk, run by the distribution's own systemd units
(``ceph-mon@a``, ``ceph-mgr@x``, ``ceph-osd@N``, enabled under ``ceph.target`` so they
start at boot). Pools for Cinder and Glance, and their cephx users with keyrings
readable by the service groups.

Every step is idempotent and says what it found: provisioning twice changes nothing
the second time. Every ``ceph``/``rbd`` call is bounded (``--connect-timeout`` and
``timeout``): none can hang when no monitor answers.

The command helpers are in :mod:`.cli`, the health checks in :mod:`.health`, the boot jobs
(re-addressing, key rotation) in :mod:`.boot`.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass

from ..exceptions import CephNotHealthy, ConfigError, DiskFull, ProvisionError
from ..settings import Settings
from ..steps import FnStep, Step, apt_install, missing_packages, outcome
from ..systemd import bounded, ensure_running, wait_for
from ..target import Target
from . import conf as cephconf
from .auth import ADMIN_CAPS, MGR_CAPS, clients, ensure_auth, gen_key
from .boot import readdress
from .cli import CEPH_USER, COMMAND_TIMEOUT_S, ceph, ceph_json, ceph_version, interface_network, paths, rbd
from .health import mon_answers, osds_up, wait_healthy
from .keys import remove_bootstrap_keys

#: Free space kept on the OSD filesystem beyond the OSD files themselves.
DISK_RESERVE_BYTES = 2 * 1024**3


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


#: Service accounts whose group reads a client keyring; the OpenStack packages installed later reuse them.
SERVICE_ACCOUNTS: tuple[str, ...] = ("cinder", "glance")


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


# --- steps ---------------------------------------------------------------------------
def install_packages(target: Target, prof: CephProfile) -> tuple[bool, str]:
    """Install the Ceph packages (no recommends); ``apt-get update`` only when the lists are missing or stale."""
    missing = missing_packages(target, prof.packages)
    if not missing:
        return False, f"installed: ceph {ceph_version(target)}"
    updated = apt_install(target, prof.packages, 1200)
    return True, f"installed {' '.join(missing)} (ceph {ceph_version(target)}){' after apt-get update' if updated else ''}"


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
        r = readdress(target, settings, ip, log=lambda _: None)  # its outcome is this step's detail
        if r.changed:
            did.append(r.detail)
    did += ensure_running(target, [unit, "ceph-mon.target", "ceph.target"])
    wait_for(f"mon.{c.mon_id} to answer", lambda: mon_answers(target, settings), COMMAND_TIMEOUT_S, error=CephNotHealthy)
    return outcome(did, f"mon.{c.mon_id} running at {cephconf.mon_addrvec(ip)}")


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
    return outcome(did, f"mgr.{c.mgr_id} running")


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
    wait_for(f"{c.osd_count} OSD(s) up and in", lambda: osds_up(target, settings, c.osd_count), 180, error=CephNotHealthy)
    return outcome(did, f"{c.osd_count} OSD(s) up")


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
    return outcome(did, f"pools {', '.join(settings.ceph.pools)} exist (rbd)")


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
    return outcome(did, f"{names} and their keyrings up to date")


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
        FnStep("ceph.bootstrap-keys", remove_unneeded_keys),
        FnStep("ceph.health", _health_step),
    ]


def remove_unneeded_keys(target: Target, settings: Settings) -> tuple[bool, str]:
    """Delete the ``client.bootstrap-*`` keys the monitor made: this cluster bootstraps without them."""
    gone = remove_bootstrap_keys(target, settings)
    return outcome([f"removed {', '.join(gone)}"] if gone else [], "no bootstrap keys")


def _health_step(target: Target, settings: Settings) -> tuple[bool, str]:
    start = time.monotonic()
    wait_healthy(target, settings, timeout=300)
    return False, f"HEALTH_OK (waited {time.monotonic() - start:.1f}s)"
