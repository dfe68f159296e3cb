"""Live progress of a long step, so a slow step is told from a hung one: on a terminal a status
line (rich) with the step and its elapsed time; elsewhere (CI, pipes, the journal) a plain line at
least every ``interval`` seconds while it runs.

Host side only (the tasks, provisioning, the build): rich is imported only when a terminal shows
the status, and the boot agent never calls this module.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from .steps import Log

#: Seconds between two "still running" lines when no terminal shows a live status.
INTERVAL_S = 30.0
#: The live status of the step running now: one at a time (rich shows one live display).
_active: list[str] = []
#: False for a quiet run (``-q``): no live status and no "still running" lines.
_shown = [True]


def set_live_allowed(allowed: bool) -> None:
    """Let :func:`heartbeat` show progress (the default) or nothing at all (a quiet run)."""
    _shown[0] = allowed


def on_terminal(stream: Any = None) -> bool:
    """True when ``stream`` (default stdout) is a terminal a live status can be drawn on."""
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


def still_running(what: str, elapsed: float) -> str:
    """The line a non-terminal run prints while ``what`` runs."""
    return f"    ... {what}: still running ({elapsed:.0f}s)"


_STILL_RUNNING = re.compile(r"^    \.\.\. .+: still running \(\d+s\)$")


def is_progress_line(line: str) -> bool:
    """True for a :func:`still_running` line: readers of a log skip them (they come at any point,
    between a step's header and its report too)."""
    return bool(_STILL_RUNNING.match(line))


@contextmanager
def heartbeat(what: str, log: Log = print, interval: float = INTERVAL_S, live: bool | None = None,
              console: Any = None, clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
    """Show that ``what`` is running for as long as the block runs (nested ones add nothing).

    Args:
        live: draw a rich status line (default: when stdout is a terminal); else log a line every ``interval`` s.
        console: the rich console of the live status (default: a new one on stdout).
    """
    if _active or not _shown[0]:
        yield
        return
    _active.append(what)
    start = clock()
    try:
        if live if live is not None else on_terminal():
            from rich.console import Console  # host side only: the agent runs without rich

            con = console or Console()
            with con.status(f"{what} ...") as status, _ticking(lambda: status.update(f"{what} ... {clock() - start:.0f}s"), 1.0):
                yield
        else:
            with _ticking(lambda: log(still_running(what, clock() - start)), interval):
                yield
    finally:
        _active.pop()


@contextmanager
def _ticking(beat: Callable[[], None], interval: float) -> Iterator[None]:
    """Call ``beat`` every ``interval`` seconds from a thread while the block runs."""
    done = threading.Event()

    def tick() -> None:
        while not done.wait(interval):
            beat()

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
