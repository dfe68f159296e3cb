"""The readiness wait says what it waits for when that changes and again every 30 s, then names it when it gives up."""

from __future__ import annotations

import itertools

import pytest

from provision.ready import NotReady, wait_ready
from provision.settings import Settings
from provision.target.local import LocalTarget


def test_a_wait_that_does_not_end_says_so_every_30_seconds_and_names_what_is_pending() -> None:
    """This machine is no instance: every check stays pending (a real, if unhappy, target)."""
    ticks = itertools.count(0, 10)  # each look at the clock is 10 s later
    lines: list[str] = []
    with pytest.raises(NotReady) as e:
        wait_ready(LocalTarget(), Settings(), timeout=100, interval=0, log=lines.append, every=30, clock=lambda: float(next(ticks)))
    assert [line.split(":", 1)[0] for line in lines] == ["waiting (10s)", "waiting (40s)", "waiting (70s)", "waiting (100s)"]
    assert len({line.split(":", 1)[1] for line in lines}) == 1 and "boot-jobs: not done" in lines[0]
    assert "Not ready after 100s: boot-jobs: not done" in e.value.message
