"""Boot-time Ceph jobs that run on the instance itself (``target = LocalTarget()``).

Stdlib only: run by systemd units under Debian's ``/usr/bin/python3``.

* :func:`readdress` — every boot, BEFORE the Ceph daemons: put the monitor on the
  instance's current private IPv4 (monmap surgery + ceph.conf), or do nothing
  and say so when the address did not change.
The per-instance key rotation is in :mod:`.keys`. Both keep their state under ``settings.state_dir`` (``/var/lib/ceph-openstack-ami``)
and append one line per run to ``ceph-boot.log`` there.
"""

from __future__ import annotations

import datetime
import time

from ..settings import Settings
from ..steps import Log, StepResult
from ..systemd import bounded
from ..target import Target
from . import monmap
from .cli import CEPH_USER, ceph, interface_network, paths

#: Appended to by both jobs, one line per run: ``<UTC time> <job> changed|unchanged: <detail>``.
LOG_NAME = "ceph-boot.log"
#: Written by :func:`readdress` when the address did not change (also printed, so it reaches the journal).
UNCHANGED_MARK = "monitor address unchanged"


def record(target: Target, settings: Settings, job: str, result: StepResult, log: Log) -> None:
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
        record(target, settings, "readdress", result, log)
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
    record(target, settings, "readdress", result, log)
    return result


def _stop(target: Target, units: list[str], log: Log) -> list[str]:
    if units:
        log("stopping " + " ".join(units))
        for u in units:  # one at a time: OSDs, then the manager, then the monitor
            target.run(["systemctl", "stop", u])
    return units


def _start(target: Target, units: list[str], log: Log) -> None:
    """Queue the starts (``--no-block``): from inside the re-addressing unit, ordered before the daemons, a blocking start would wait for itself."""
    if units:
        log("starting " + " ".join(reversed(units)))
        target.run(["systemctl", "start", "--no-block", *reversed(units)])


