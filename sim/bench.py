"""Benchmarks on the simulation: boot milestones and provisioning, printed as JSON.

Figures are measured here and printed; tests never assert on timings.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from provision.boot.jobs import jobs
from provision.host import provision
from provision.ready import check_all
from provision.settings import Settings
from provision.steps import Log
from provision.target import Target

from .lifecycle import Sim
from .timeline import SHOW_PROPERTIES, Panel, Span, critical_path, first_and_last, parse_show, path_rows, render_svg, show_blocks

#: Where ``bench.boot`` draws its timeline picture.
TIMELINE_SVG = Path("build/bench-boot.svg")


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
    for fields in show_blocks(out):
        start, end = int(fields.get("ExecMainStartTimestampMonotonic", 0)), int(fields.get("ExecMainExitTimestampMonotonic", 0))
        if start and end:
            # monotonic is the kernel's: shared with the host, so convert through "now"
            result[fields["Id"]] = (now - boot_mono + start / 1e6, now - boot_mono + end / 1e6)
    return result


@dataclass(frozen=True)
class Boot:
    """One measured boot: seconds to each milestone, every unit's span, CPU seconds until ready."""

    milestones: dict[str, float]
    spans: tuple[Span, ...]
    cpu_s: float


def boot_spans(target: Target, started: float) -> list[Span]:
    """Every active service's span at this boot, from systemd's timestamps, in seconds from ``started`` (epoch)."""
    out = target.run(["sh", "-c", f"cat /proc/uptime; systemctl show -p {SHOW_PROPERTIES} "
                                  "$(systemctl list-units --type=service --state=active --no-legend --plain | awk '{print $1}')"]).stdout
    uptime, _, show = out.partition("\n")
    # the kernel's monotonic clock is the host's too: its value when the container started
    zero_us = int((float(uptime.split()[0]) - (time.time() - started)) * 1e6)
    return parse_show(show, zero_us)


def cpu_seconds(sim: Sim) -> float:
    """CPU seconds the instance's container has used since it started (its cgroup's usage)."""
    stats = sim.docker.containers.get(sim.state.container).stats(stream=False)
    return float(stats["cpu_stats"]["cpu_usage"]["total_usage"]) / 1e9


def watch_boot(sim: Sim, settings: Settings, timeout: float = 900, interval: float = 0.5) -> Boot:
    """Poll the readiness checks from container start; seconds to each milestone, spans and CPU."""
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
    cpu = cpu_seconds(sim)
    units = unit_times(target, settings)
    milestones = {("ready" if k == "ready" else f"check.{k}"): v for k, v in firsts.items()}
    for unit, (_, end) in units.items():
        milestones[f"unit.{unit}"] = end - started
    milestones["units_s"] = sum(end - start for start, end in units.values())
    return Boot(milestones, tuple(boot_spans(target, started)), cpu)


def describe(boot: Boot, chain: list[Span]) -> dict[str, Any]:
    """A boot's critical path to ready (``chain``), its first and last service, its CPU seconds (JSON-ready)."""
    return {"critical_path": path_rows(chain), **first_and_last(boot.spans),
            "cpu_s": round(boot.cpu_s, 1), "ready_s": round(boot.milestones["ready"], 2)}


def panel(title: str, boot: Boot, chain: list[Span]) -> Panel:
    """The timeline panel of one boot (units that became active by ready, its critical path ``chain`` marked)."""
    ready = boot.milestones["ready"]
    spans = tuple(s for s in boot.spans if s.end <= ready + 1)
    return Panel(title, spans, ready, frozenset(s.unit for s in chain))


def bench_boot(settings: Settings, runs: int = 3, log: Log = print) -> dict[str, Any]:
    """Reboot (same IP) and relaunch (new instance) ``runs`` times each; milestones as JSON-ready data."""
    sim = Sim(settings, log=log)
    sim.up()
    out: dict[str, Any] = {"runs": runs, "instance_type": settings.instance_type}
    units_all: list[float] = []
    panels: list[Panel] = []
    for scenario, action in (("same_ip", lambda: sim.reboot(wait=False)), ("new_instance", lambda: sim.relaunch(wait=False))):
        boots: list[Boot] = []
        for n in range(runs):
            log(f"bench.boot: {scenario} run {n + 1}/{runs}")
            action()
            boots.append(watch_boot(sim, settings))
            log(f"bench.boot: {scenario} run {n + 1}: ready after {boots[-1].milestones['ready']:.1f}s")
        samples = [b.milestones for b in boots]
        keys = sorted({k for s in samples for k in s})
        out[scenario] = {k + ("" if k.endswith("_s") else "_s"): stats([s[k] for s in samples if k in s]) for k in keys}
        out[scenario]["services_s"] = stats([s["ready"] - s["units_s"] for s in samples])
        out[scenario]["cpu_s"] = stats([b.cpu_s for b in boots])
        # the boot with the median ready time stands for the scenario in the path and the picture
        typical = sorted(boots, key=lambda b: b.milestones["ready"])[len(boots) // 2]
        chain = critical_path(typical.spans, until=typical.milestones["ready"])
        out[scenario]["typical"] = describe(typical, chain)
        panels.append(panel(f"{scenario}: ready {typical.milestones['ready']:.1f}s ({settings.instance_type})", typical, chain))
        units_all += [s["units_s"] for s in samples]
    out["units_s"] = stats(units_all)
    TIMELINE_SVG.parent.mkdir(parents=True, exist_ok=True)
    TIMELINE_SVG.write_text(render_svg(panels))
    out["timeline_svg"] = str(TIMELINE_SVG)
    log(f"bench.boot: timeline picture in {TIMELINE_SVG}")
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
