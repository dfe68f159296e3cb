"""The one copy of unit control and bounded waits, written on the Target interface."""

from __future__ import annotations

import time
from typing import Callable, Sequence

from .exceptions import ProvisionError
from .steps import Log
from .target import Target

#: Default bound of a command wrapped by :func:`bounded`.
COMMAND_TIMEOUT_S = 120
#: Default bound of a ``systemctl start``/``restart``.
START_TIMEOUT_S = 300


def bounded(argv: Sequence[str], seconds: int = COMMAND_TIMEOUT_S) -> list[str]:
    """Wrap ``argv`` in ``timeout`` so it is killed (exit 124) after ``seconds``."""
    return ["timeout", "-k", "5", str(seconds), *argv]


def wait_for(
    what: str,
    probe: Callable[[], bool],
    timeout: float,
    interval: float = 1.0,
    error: type[ProvisionError] = ProvisionError,
) -> float:
    """Poll ``probe`` until it returns True; return the seconds waited.

    Raises:
        ``error`` (ProvisionError by default) after ``timeout`` seconds, naming ``what``.
    """
    start = time.monotonic()
    while not probe():
        if time.monotonic() - start > timeout:
            raise error(f"Timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - start


def unit_enabled(target: Target, unit: str) -> bool:
    """True when ``systemctl is-enabled`` says the unit is enabled."""
    return target.run(["systemctl", "is-enabled", "--quiet", unit], check=False).ok


def ensure_running(target: Target, units: Sequence[str], timeout: int = START_TIMEOUT_S) -> list[str]:
    """Enable and start ``units`` (targets are enabled only); return what had to be done (empty when nothing)."""
    done = []
    to_enable = [u for u in units if not unit_enabled(target, u)]
    if to_enable:
        target.run(["systemctl", "enable", "--quiet", *to_enable])
        done.append("enabled " + " ".join(to_enable))
    to_start = [u for u in units if not u.endswith(".target") and not target.service_active(u)]
    if to_start:
        target.run(bounded(["systemctl", "start", *to_start], timeout))
        done.append("started " + " ".join(to_start))
    return done


def restart_if_active(target: Target, units: Sequence[str], log: Log | None = None, queue: bool = False) -> list[str]:
    """Restart the units among ``units`` that are running (at boot they are not yet: nothing happens).

    ``queue``: only queue the restarts (``--no-block``). A boot job must: its unit is ordered
    before these services, so a blocking restart from inside it would wait for itself.
    """
    active = [u for u in units if target.service_active(u)]
    if active:
        if log:
            log(("queueing a restart of " if queue else "restarting ") + " ".join(active))
        target.run(bounded(["systemctl", *(["--no-block"] if queue else []), "restart", *active], START_TIMEOUT_S))
    return active


def unit_states(target: Target, units: Sequence[str]) -> dict[str, tuple[str, str]]:
    """(ActiveState, Result) of each unit, in one ``systemctl show``; ("", "") where systemd does not answer.

    Parsed as ``KEY=VALUE`` lines: with ``--value`` systemd prints the properties in its own
    order, not the order asked for.
    """
    r = target.run(["systemctl", "show", "-p", "ActiveState", "-p", "Result", *units], check=False)
    states = dict.fromkeys(units, ("", ""))
    for unit, block in zip(units, r.stdout.strip().split("\n\n") if r.ok else [], strict=False):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        states[unit] = (fields.get("ActiveState", ""), fields.get("Result", ""))
    return states


#: Unit states that are (or are becoming) a running unit.
_RUNNING_STATES = ("active", "activating", "reloading", "deactivating")


def stop_units(target: Target, units: Sequence[str], timeout: int = START_TIMEOUT_S) -> list[str]:
    """Stop the units among ``units`` that run (unknown units are skipped); return those stopped.

    One bounded ``systemctl stop`` for all of them (systemd orders the stop jobs itself).

    Raises:
        ProvisionError: a unit still runs after the stop.
    """
    running = [u for u, (state, _) in unit_states(target, units).items() if state in _RUNNING_STATES]
    if not running:
        return []
    target.run(bounded(["systemctl", "stop", *running], timeout))
    left = [u for u, (state, _) in unit_states(target, running).items() if state in _RUNNING_STATES]
    if left:
        raise ProvisionError(
            f"Units still running after systemctl stop: {' '.join(left)}",
            hint=f"see `systemctl status {left[0]}` and its journal",
        )
    return running
