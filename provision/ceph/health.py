"""Is the cluster really up: health, settled maps, daemons current, and the bounded wait for HEALTH_OK."""

from __future__ import annotations

import json
import time
from typing import Any

from ..exceptions import CephNotHealthy, CommandFailed, ProvisionError
from ..settings import Settings
from ..steps import Log
from ..systemd import bounded
from ..target import Target
from .cli import ceph, ceph_json


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
    log: Log | None = None,
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
