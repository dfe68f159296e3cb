"""Boot-time Ceph jobs that run on the instance itself (``target = LocalTarget()``).

Stdlib only: run by systemd units under Debian's ``/usr/bin/python3``.

* :func:`readdress` — every boot, BEFORE the Ceph daemons: put the monitor on the
  instance's current private IPv4 (monmap surgery + ceph.conf), or do nothing
  and say so when the address did not change.
* :func:`rotate_keys` — once per new instance-id, AFTER the daemons are up: give
  this instance cephx keys of its own, so two instances of one public image
  never share a key.

Both keep their state under ``settings.state_dir`` (``/var/lib/ceph-openstack-ami``)
and append one line per run to ``ceph-boot.log`` there.
"""

from __future__ import annotations

import datetime
import functools
import json
import re
import time

from ..exceptions import CephNotHealthy, ProvisionError
from ..settings import Settings
from ..steps import Log, StepResult
from ..systemd import bounded, wait_for
from ..target import Target
from . import monmap
from .auth import clients, gen_key, replace_key
from .cli import CEPH_USER, ceph, interface_network, paths
from .health import mon_answers

#: Appended to by both jobs, one line per run: ``<UTC time> <job> changed|unchanged: <detail>``.
LOG_NAME = "ceph-boot.log"
#: Written by :func:`readdress` when the address did not change (also printed, so it reaches the journal).
UNCHANGED_MARK = "monitor address unchanged"


def _record(target: Target, settings: Settings, job: str, result: StepResult, log: Log) -> None:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    line = f"{stamp} {job} {'changed' if result.changed else 'unchanged'}: {result.detail}"
    log(line)
    path = f"{settings.state_dir}/{LOG_NAME}"
    target.run(["mkdir", "-p", settings.state_dir])
    target.run("printf '%%s\\n' %s >> %s", line, path)


def _work_dir(target: Target, settings: Settings) -> str:
    """The daemon-owned work dir for monmap copies (ceph-mon runs as ceph and writes there)."""
    d = f"{settings.state_dir}/ceph"
    target.run(["install", "-d", "-m", "0755", settings.state_dir])
    target.run(["install", "-d", "-o", CEPH_USER, "-g", CEPH_USER, "-m", "0700", d])
    return d


def active_daemons(target: Target) -> list[str]:
    """The active ceph-mon@/ceph-mgr@/ceph-osd@ units, in stop order (OSDs, manager, monitor)."""
    r = target.run(
        ["systemctl", "list-units", "--type=service", "--state=active", "--plain", "--no-legend",
         "ceph-osd@*", "ceph-mgr@*", "ceph-mon@*"],
        check=False,
    )
    units = [ln.split()[0] for ln in r.stdout.splitlines() if ln.strip()]
    order = {"ceph-osd@": 0, "ceph-mgr@": 1, "ceph-mon@": 2}
    return sorted(units, key=lambda u: order.get(u.split("@")[0] + "@", 3))


def extract_monmap(target: Target, settings: Settings, path: str) -> monmap.MonMap:
    """Copy the stopped monitor's map to ``path`` and parse it (``monmaptool --print``)."""
    c = settings.ceph
    target.run(
        bounded(["ceph-mon", "--cluster", c.cluster, "-i", c.mon_id, "--setuser", CEPH_USER,
                         "--setgroup", CEPH_USER, "--extract-monmap", path])
    )
    return monmap.parse_monmaptool_print(target.run(["monmaptool", "--print", path]).stdout)


def readdress(target: Target, settings: Settings, ip: str, log: Log = print) -> StepResult:
    """Put the monitor on ``ip``: rewrite and inject the monmap and ceph.conf, or do nothing when unchanged.

    Unit ordering (``Type=oneshot``): ``After=network-online.target`` and the job that
    learns ``ip`` from the metadata; before every Ceph daemon. ``Before=`` cannot name a
    template (``ceph-osd@.service`` orders nothing), so either list the instances
    (``Before=ceph-mon@a.service ceph-mgr@x.service ceph-osd@0.service ...`` plus
    ``ceph-mon.target ceph-mgr.target ceph-osd.target ceph.target``; what the tests used)
    or add a drop-in ``[Unit] After=coa-ceph-readdress.service`` to the three templates
    (``/etc/systemd/system/ceph-{mon,mgr,osd}@.service.d/``), which also covers OSDs added
    later. Run by hand with the daemons up, it observes ``ceph mon dump``; it stops OSDs,
    manager and monitor only when there is something to change, and starts them again.

    Safe to re-run after a crash at any point: every run extracts a fresh copy of the
    map into ``<state_dir>/ceph/``; only ``ceph-mon --inject-monmap`` changes the store
    (the commit point), and ceph.conf is written atomically after it.

    When nothing changed, the detail (printed, so it reaches the unit's journal, and
    appended to ``<state_dir>/ceph-boot.log``) starts with ``monitor address unchanged``.
    """
    start = time.monotonic()
    name = "ceph.readdress"
    p = paths(settings)
    c = settings.ceph
    if not target.exists(f"{p.mon_dir}/done"):
        return StepResult(name, False, f"no monitor in {p.mon_dir}; nothing to re-address")
    conf_text = target.read(p.conf).decode()
    network = interface_network(target, ip)
    work = _work_dir(target, settings)
    layout = monmap.Layout(c.mon_id, c.cluster, f"{work}/monmap.work", CEPH_USER, CEPH_USER)

    running = active_daemons(target)
    observed = None
    if f"ceph-mon@{c.mon_id}.service" in running:
        r = ceph(target, settings, "mon", "dump", "-f", "json", check=False)
        if r.ok:
            observed = monmap.parse_mon_dump_json(r.stdout)
    stopped: list[str] = []
    if observed is None:
        if running:
            stopped = _stop(target, running, log)
        observed = extract_monmap(target, settings, f"{work}/monmap.observed")
    plan = monmap.plan_readdress(observed, conf_text, ip, network, layout)
    if plan.empty:
        _start(target, stopped, log)
        result = StepResult(name, False, f"{plan.reason}", time.monotonic() - start)
        _record(target, settings, "readdress", result, log)
        return result
    if plan.commands and not stopped and running:
        stopped = _stop(target, running, log)
    for cmd in plan.commands:
        log(f"$ {cmd}")
        target.run(bounded(list(cmd.argv)))
    if plan.conf is not None:
        st = target.file_state(p.conf)
        target.put(p.conf, plan.conf, st.mode if st else 0o644, st.owner if st else "root", st.group if st else "root")
    target.run(["rm", "-f", layout.work_file, f"{work}/monmap.observed"])
    _start(target, stopped, log)
    result = StepResult(name, True, plan.reason, time.monotonic() - start)
    _record(target, settings, "readdress", result, log)
    return result


def _stop(target: Target, units: list[str], log: Log) -> list[str]:
    if units:
        log("stopping " + " ".join(units))
        for u in units:  # one at a time: OSDs, then the manager, then the monitor
            target.run(["systemctl", "stop", u])
    return units


def _start(target: Target, units: list[str], log: Log) -> None:
    if units:
        log("starting " + " ".join(reversed(units)))
        target.run(["systemctl", "start", *reversed(units)])


# --- key rotation ----------------------------------------------------------------------
def _rotation_plan(target: Target, settings: Settings) -> list[tuple[str, str, str | None]]:
    """(entity, keyring path, unit to restart) in rotation order: OSDs, manager, clients, client.admin last."""
    p = paths(settings)
    c = settings.ceph
    plan: list[tuple[str, str, str | None]] = []
    for i in range(c.osd_count):
        plan.append((f"osd.{i}", p.keyring(f"osd.{i}"), f"ceph-osd@{i}"))
    plan.append((f"mgr.{c.mgr_id}", p.keyring(f"mgr.{c.mgr_id}"), f"ceph-mgr@{c.mgr_id}"))
    for cl in clients(settings):
        plan.append((cl.entity, p.keyring(cl.entity), None))
    plan.append(("client.admin", p.admin_keyring, None))
    return plan


def _admin_keyring(target: Target, settings: Settings, pending_admin: str) -> str:
    """The keyring that authenticates client.admin now: the installed one, or a pending one left by a crash."""
    p = paths(settings)
    for keyring in (p.admin_keyring, pending_admin):
        if target.exists(keyring):
            r = ceph(target, settings, "auth", "get-key", "client.admin", check=False, keyring=keyring)
            if r.ok:
                return keyring
    raise ProvisionError(
        "No keyring authenticates client.admin (neither the installed one nor a pending rotation's)",
        hint=f"check that the monitor runs (`systemctl status ceph-mon@{settings.ceph.mon_id}`)",
    )


def rotate_keys(target: Target, settings: Settings, log: Log = print) -> StepResult:
    """Give this instance new cephx keys: the OSDs', mgr.x's, the clients' and client.admin's.

    Unit ordering: once per new instance-id, ``After=ceph.target`` and after the daemons
    answer (the job waits for the monitor itself), ``Before=`` anything that reads the
    client keyrings (cinder, glance, nova, the libvirt secret). Data stays; the image's keys
    stop working on this instance.

    For each entity, in order OSDs, manager, clients, client.admin last: a new secret
    (``ceph-authtool --gen-print-key``) is written to a pending keyring under
    ``<state_dir>/ceph-rotate/`` first, then ``ceph auth import``-ed (caps unchanged),
    then installed into the entity's keyring file (mode and owner kept), then the daemon
    is restarted (and, for an OSD, awaited) so it authenticates with the new key. A run
    killed half-way is finished by the next run, which re-imports pending keys before
    making new ones; client.admin's pending key is used to authenticate when the
    installed one was already replaced in the cluster.

    ``mon.`` goes first and differently: its key lives only in the monitor's data dir
    (``ceph auth get mon.`` reads it from there) and authenticates anyone who holds it
    with ``allow *`` (measured: ``ceph -n mon. -k <image's keyring> health`` answers), so
    the monitor is stopped, its keyring rewritten atomically with a new key (caps kept;
    ``ceph-authtool --gen-key`` would drop them and lock every ``mon.`` login out) and
    the monitor started again; the other daemons reconnect by themselves. A kill between
    stop and start leaves either key in place and the monitor starts at the next boot.
    """
    start = time.monotonic()
    rot = f"{settings.state_dir}/ceph-rotate"
    target.run(["install", "-d", "-m", "0700", rot])
    pending_admin = f"{rot}/client.admin.keyring"
    wait_for("the monitor to answer", lambda: mon_answers(target, settings), 180, error=CephNotHealthy)
    admin = _admin_keyring(target, settings, pending_admin)
    done = [_rotate_mon_key(target, settings, log)]
    for entity, path, unit in _rotation_plan(target, settings):
        if not target.exists(path):
            log(f"{entity}: no keyring at {path}; skipped")
            continue
        pending = f"{rot}/{entity}.keyring"
        if not target.exists(pending):
            cur = ceph(target, settings, "auth", "get", entity, keyring=admin, check=False)
            if not cur.ok:
                log(f"{entity}: not in the cluster; skipped")
                continue
            target.put(pending, replace_key(cur.stdout, gen_key(target)), 0o600)
        new_key = _key_of(target.read(pending).decode())
        ceph(target, settings, "auth", "import", "-i", pending, keyring=admin)
        st = target.file_state(path)
        assert st is not None
        target.put(path, replace_key(target.read(path).decode(), new_key), st.mode, st.owner, st.group)
        if entity == "client.admin":
            admin = path
        if unit:
            # reset-failed: a daemon that failed to start before must not be stuck in its start limit
            target.run(["systemctl", "reset-failed", unit], check=False)
            target.run(["systemctl", "restart", unit])
            if unit.startswith("ceph-osd@"):
                wait_for(f"{entity} up", functools.partial(_osd_up, target, settings, entity, admin), 180, error=CephNotHealthy)
        target.run(["rm", "-f", pending])
        done.append(entity)
    result = StepResult("ceph.rotate-keys", bool(done), f"new keys for {', '.join(done) or 'nothing'}", time.monotonic() - start)
    _record(target, settings, "rotate-keys", result, log)
    return result


def _rotate_mon_key(target: Target, settings: Settings, log: Log) -> str:
    """Give ``mon.`` a new key: stop the monitor, rewrite its keyring (caps kept), start it, wait for it."""
    c = settings.ceph
    p = paths(settings)
    path = p.keyring("mon.")
    unit = f"ceph-mon@{c.mon_id}"
    st = target.file_state(path)
    if st is None:
        raise ProvisionError(f"The monitor has no keyring at {path}")
    new_text = replace_key(target.read(path).decode(), gen_key(target))
    log(f"mon.: stopping {unit} to replace its key")
    target.run(["systemctl", "stop", unit])
    try:
        target.put(path, new_text, st.mode, st.owner, st.group)
    finally:
        target.run(["systemctl", "start", unit])
    wait_for("the monitor to answer", lambda: mon_answers(target, settings), 180, error=CephNotHealthy)
    return "mon."


def _key_of(keyring_text: str) -> str:
    m = re.search(r"(?m)^[ \t]*key[ \t]*=[ \t]*(\S+)[ \t]*$", keyring_text)
    if not m:
        raise ProvisionError("A pending keyring has no key line")
    return m.group(1)


def _osd_up(target: Target, settings: Settings, entity: str, admin: str) -> bool:
    r = ceph(target, settings, "osd", "dump", "-f", "json", check=False, keyring=admin)
    if not r.ok:
        return False
    osd_id = int(entity.split(".")[1])
    return any(o["osd"] == osd_id and o["up"] == 1 for o in json.loads(r.stdout).get("osds", []))

