"""Benchmarks on the simulation: boot milestones and provisioning, printed as JSON.

Figures are measured here and printed; tests never assert on timings.
"""

from __future__ import annotations

import statistics
import time
from datetime import datetime
from typing import Any

from provision.boot.jobs import jobs
from provision.host import provision
from provision.ready import check_all
from provision.settings import Settings
from provision.steps import Log
from provision.target import Target

from .lifecycle import Sim


def stats(values: list[float]) -> dict[str, Any]:
    """Median and spread of ``values`` (seconds, rounded)."""
    if not values:
        return {"median": None, "min": None, "max": None, "values": []}
    return {
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
        "values": [round(v, 2) for v in values],
    }


def container_started_at(sim: Sim) -> float:
    """When the current instance's container started (epoch seconds)."""
    c = sim.docker.containers.get(sim.state.container)
    c.reload()
    started = c.attrs["State"]["StartedAt"]  # e.g. 2026-11-26T14:20:09.123456789Z
    head, _, frac = started.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float("0." + (frac or "0")[:6])


def unit_times(target: Target, settings: Settings) -> dict[str, tuple[float, float]]:
    """(start, end) epoch seconds of each boot job's unit at this boot."""
    units = [j.unit for j in jobs(settings)]
    out = target.run(
        ["systemctl", "show", "-p", "Id,ExecMainStartTimestampMonotonic,ExecMainExitTimestampMonotonic", *units], check=False
    ).stdout
    boot_mono = float(target.run("cut -d' ' -f1 /proc/uptime").stdout.strip())
    now = time.time()
    result: dict[str, tuple[float, float]] = {}
    for block in out.strip().split("\n\n"):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        start, end = int(fields.get("ExecMainStartTimestampMonotonic", 0)), int(fields.get("ExecMainExitTimestampMonotonic", 0))
        if start and end:
            # monotonic is the kernel's: shared with the host, so convert through "now"
            result[fields["Id"]] = (now - boot_mono + start / 1e6, now - boot_mono + end / 1e6)
    return result


def watch_boot(sim: Sim, settings: Settings, timeout: float = 900, interval: float = 0.5) -> dict[str, float]:
    """Poll the readiness checks from container start; return seconds to each milestone."""
    started = container_started_at(sim)
    firsts: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    target = sim.target()
    while time.monotonic() < deadline:
        try:
            results = check_all(target, settings)
        except Exception:  # the container is still coming up
            results = []
        for r in results:
            if r.ok and r.name not in firsts:
                firsts[r.name] = time.time() - started
        if results and all(r.ok for r in results):
            firsts["ready"] = time.time() - started
            break
        time.sleep(interval)
    else:
        raise TimeoutError(f"not ready within {timeout:.0f}s; reached: {sorted(firsts)}")
    units = unit_times(target, settings)
    milestones = {("ready" if k == "ready" else f"check.{k}"): v for k, v in firsts.items()}
    for unit, (_, end) in units.items():
        milestones[f"unit.{unit}"] = end - started
    milestones["units_s"] = sum(end - start for start, end in units.values())
    return milestones


def bench_boot(settings: Settings, runs: int = 3, log: Log = print) -> dict[str, Any]:
    """Reboot (same IP) and relaunch (new instance) ``runs`` times each; milestones as JSON-ready data."""
    sim = Sim(settings, log=log)
    sim.up()
    out: dict[str, Any] = {"runs": runs, "instance_type": settings.instance_type}
    units_all: list[float] = []
    for scenario, action in (("same_ip", lambda: sim.reboot(wait=False)), ("new_instance", lambda: sim.relaunch(wait=False))):
        samples: list[dict[str, float]] = []
        for n in range(runs):
            log(f"bench.boot: {scenario} run {n + 1}/{runs}")
            action()
            samples.append(watch_boot(sim, settings))
        keys = sorted({k for s in samples for k in s})
        out[scenario] = {k + ("" if k.endswith("_s") else "_s"): stats([s[k] for s in samples if k in s]) for k in keys}
        out[scenario]["services_s"] = stats([s["ready"] - s["units_s"] for s in samples])
        units_all += [s["units_s"] for s in samples]
    out["units_s"] = stats(units_all)
    return out


def bench_provision(settings: Settings, log: Log = print) -> dict[str, Any]:
    """Provision a fresh instance, then again on the same one; times and changed counts."""
    sim = Sim(settings, log=log)
    sim.launch_unprovisioned()
    target = sim.target()
    t0 = time.monotonic()
    first = provision(target, settings, sim.state.profile, log=log)
    first_s = time.monotonic() - t0
    t1 = time.monotonic()
    second = provision(target, settings, sim.state.profile, log=log)
    second_s = time.monotonic() - t1
    sim.mark_provisioned()
    return {
        "first_s": round(first_s, 2),
        "first_changed": first.changed,
        "second_s": round(second_s, 2),
        "second_changed": second.changed,
        "steps": len(second.results),
        "first_steps_s": {r.name: round(r.seconds, 2) for r in first.results},
        "second_steps_s": {r.name: round(r.seconds, 2) for r in second.results},
    }
