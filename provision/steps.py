"""Steps: idempotent units of provisioning that report whether they changed anything."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Iterable, Protocol, Sequence

from .settings import Settings
from .target import Target

#: Where a step or job writes its progress lines (``print`` on a terminal, the journal at boot).
Log = Callable[[str], None]


def outcome(did: Sequence[str], unchanged: str) -> tuple[bool, str]:
    """A step function's result: (True, what was done) when anything was, else (False, why nothing was needed)."""
    return (True, "; ".join(did)) if did else (False, unchanged)


@dataclass(frozen=True)
class StepResult:
    """What one step did: its name, whether it changed the host, and why (one line)."""

    name: str
    changed: bool
    detail: str = ""
    seconds: float = 0.0

    def line(self) -> str:
        """One human-readable log line."""
        state = "changed" if self.changed else "unchanged"
        return f"[{state:9}] {self.name}: {self.detail} ({self.seconds:.1f}s)"


@dataclass(frozen=True)
class FnStep:
    """A :class:`Step` made of a name and a function returning (changed, detail)."""

    name: str
    fn: Callable[[Target, Settings], tuple[bool, str]]

    def apply(self, target: Target, settings: Settings) -> StepResult:
        """Run the step; report whether it changed anything and why."""
        start = time.monotonic()
        changed, detail = self.fn(target, settings)
        return StepResult(self.name, changed, detail, time.monotonic() - start)


def missing_packages(target: Target, packages: Sequence[str]) -> list[str]:
    """The Debian packages of ``packages`` that are not installed on the target."""
    fmt = "${Package} ${db:Status-Abbrev}\n"
    r = target.run(["dpkg-query", "-W", "-f", fmt, *packages], check=False)
    installed = {ln.split()[0] for ln in r.stdout.splitlines() if len(ln.split()) > 1 and ln.split()[1] == "ii"}
    return [p for p in packages if p not in installed]


def apt_install(target: Target, packages: Sequence[str], seconds: int) -> bool:
    """``apt-get install`` without recommends, bounded; return True if the lists had to be refreshed.

    ``apt-get update`` runs first only when there are no package lists, and once more when
    the install fails on stale ones; the downloaded .debs are cleaned away afterwards.
    dpkg runs with ``--force-unsafe-io`` (no fsync per unpacked file, as Debian's own
    container images do): a host being provisioned is either snapshotted after a clean
    shutdown or provisioned again, and syncing each of ~800 packages' files is slow (the
    OpenStack packages took 238 s with it in the sim, 304-332 s without).
    """
    env = ["env", "DEBIAN_FRONTEND=noninteractive"]
    install = [*env, "apt-get", "install", "-y", "-q", "--no-install-recommends",
               "-o", "Dpkg::Options::=--force-unsafe-io", *packages]
    update = [*env, "apt-get", "update", "-q"]
    updated = not target.run("ls /var/lib/apt/lists/ | grep -q '_Packages'", check=False).ok
    if updated:
        target.run(update, timeout=600)
    if not target.run(install, check=updated, timeout=seconds).ok:  # stale lists (404s) or an unknown package
        target.run(update, timeout=600)
        updated = True
        target.run(install, timeout=seconds)
    target.run(["apt-get", "clean"], timeout=120)  # the downloaded .debs have no place in an image
    return updated


class Step(Protocol):
    """A provisioning step: ``apply(target, settings)`` is idempotent."""

    @property
    def name(self) -> str:
        """The step's name in logs and reports."""
        ...

    def apply(self, target: Target, settings: Settings) -> StepResult: ...


@dataclass
class Report:
    """Results of a run of steps."""

    results: list[StepResult] = field(default_factory=list)

    @property
    def changed(self) -> int:
        """How many steps reported a change."""
        return sum(1 for r in self.results if r.changed)

    @property
    def seconds(self) -> float:
        """Total time spent."""
        return sum(r.seconds for r in self.results)


def run_steps(
    target: Target,
    settings: Settings,
    steps: Iterable[Step],
    log: Log = print,
    around: Callable[[str], ContextManager[None]] | None = None,
) -> Report:
    """Apply ``steps`` in order, logging one line each; stop at the first error.

    ``around``: a context each step runs in, given its name (the host's live progress,
    :func:`provision.progress.heartbeat`).
    """
    report = Report()
    for step in steps:
        log(f"==> {step.name} ...")
        start = time.monotonic()
        with around(step.name) if around else nullcontext():
            result = step.apply(target, settings)
        result = StepResult(result.name, result.changed, result.detail, time.monotonic() - start)
        report.results.append(result)
        log(result.line())
    return report
