"""Readiness: the checks that say an instance is ready, written on the Target interface."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Callable

from .boot.jobs import jobs
from .ceph import health as ceph_health
from .exceptions import CommandFailed, ProvisionError
from .openstack.addresses import saved_addresses
from .openstack.checks import CHECKS as OPENSTACK_CHECKS
from .openstack.dashboard import dashboard_login_url, dashboard_status, redirect_ok, redirect_status
from .paths import agent_argv
from .settings import Settings
from .steps import Log
from .systemd import unit_states
from .target import Target


@dataclass(frozen=True)
class Check:
    """One readiness check's outcome."""

    name: str
    ok: bool
    detail: str


def check_boot_jobs(target: Target, settings: Settings) -> Check:
    """Every boot job's unit ran and succeeded at this boot."""
    states = unit_states(target, [j.unit for j in jobs(settings)])
    bad = [f"{unit}={'/'.join(state) if state[0] else 'unknown'}" for unit, state in states.items() if state != ("active", "success")]
    return Check("boot-jobs", not bad, "all done" if not bad else "not done: " + ", ".join(bad))


def check_hostname(target: Target, settings: Settings) -> Check:
    """The static hostname is set."""
    name = target.run("hostname", check=False).stdout.strip()
    return Check("hostname", name == settings.hostname, name or "unknown")


def check_ceph(target: Target, settings: Settings) -> Check:
    """Ceph is HEALTH_OK for real: settled maps and the daemons running now (not a stale report)."""
    try:
        ok, detail = ceph_health.settled(ceph_health.health(target, settings))
        if ok:
            ok, why = ceph_health.daemons_current(target, settings)
            detail = "HEALTH_OK" if ok else f"HEALTH_OK but {why}"
    except (CommandFailed, ProvisionError) as e:
        return Check("ceph", False, f"no answer from the monitor ({str(e).splitlines()[0][:160]})")
    return Check("ceph", ok, detail)


def check_openstack(target: Target, settings: Settings) -> list[Check]:
    """Keystone, Glance, Cinder, the boot volume, compute and the demo server, in one call of the
    agent's OpenStack client on the instance (``python3 -m provision.openstack check``: one process, one token)."""
    r = target.run(agent_argv("provision.openstack", "check"), check=False, timeout=60)
    try:
        data = json.loads(r.stdout.strip().splitlines()[-1])
        return [Check(c["name"], bool(c["ok"]), str(c["detail"])[:320]) for c in data["checks"]]
    except (IndexError, KeyError, TypeError, json.JSONDecodeError):
        why = (r.stderr.strip().splitlines() or [f"exit {r.exit_code}"])[-1][:200]
        return [Check(name, False, why) for name in OPENSTACK_CHECKS]


def check_dashboard(target: Target, settings: Settings) -> Check:
    """The dashboard's login page answers 200 over TLS on the instance (our certificate checked for
    the public name), and plain HTTP answers with a redirect to it."""
    addrs = saved_addresses(target, settings)
    public = addrs.public_host if addrs else None
    code = dashboard_status(target, settings, public)
    redirect = redirect_status(target, settings)
    ok = code == "200" and redirect_ok(settings, redirect)
    url = dashboard_login_url(settings, public or "127.0.0.1")
    return Check("dashboard", ok, f"{url} answered {code or 'nothing'}; port {settings.tls.redirect_port} answered {redirect or 'nothing'}")


def one(check: Callable[[Target, Settings], Check]) -> Probe:
    """A probe made of a check that gives one result."""
    return lambda target, settings: [check(target, settings)]


Probe = Callable[[Target, Settings], list[Check]]
#: The readiness probes, in the order their results are shown.
PROBES: list[Probe] = [one(check_boot_jobs), one(check_hostname), one(check_ceph), check_openstack, one(check_dashboard)]


def check_all(target: Target, settings: Settings) -> list[Check]:
    """Run every readiness check."""
    return [c for probe in PROBES for c in probe(target, settings)]


class NotReady(ProvisionError):
    """The instance did not become ready within the bound."""


def wait_ready(
    target: Target,
    settings: Settings,
    timeout: float = 900,
    interval: float = 3,
    log: Log = print,
    passes: int = 2,
    every: float = 30,
    clock: Callable[[], float] = time.monotonic,
) -> list[Check]:
    """Poll the checks until all pass ``passes`` times in a row; raise NotReady naming what is not ready.

    What is pending is logged when it changes, and again at least every ``every`` seconds with
    the time waited (a slow boot is told from a hung one).

    One pass is not enough right after a boot: the manager restarted by the key rotation, for
    one, can drop out of the map for a moment after the cluster first reported HEALTH_OK.
    """
    start = clock()
    deadline = start + timeout
    last: list[Check] = []
    shown, shown_at = "", start
    streak = 0
    while True:
        last = check_all(target, settings)
        pending = [c for c in last if not c.ok]
        streak = 0 if pending else streak + 1
        if streak >= passes:
            return last
        summary = "; ".join(f"{c.name}: {c.detail}" for c in pending)
        now = clock()
        if summary and (summary != shown or now - shown_at >= every):
            log(f"waiting ({now - start:.0f}s): {summary}")
            shown, shown_at = summary, now
        if now > deadline:
            raise NotReady(f"Not ready after {timeout:.0f}s: {summary or 'checks not stable'}", hint="see the boot jobs' logs with `invoke sim.logs`")
        time.sleep(interval)
