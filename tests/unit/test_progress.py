"""Live progress of long steps: a line at least every interval when no terminal shows a status,
a rich status line on a terminal, one at a time."""

from __future__ import annotations

import io
import re
import time
from functools import partial

from rich.console import Console

from provision.progress import heartbeat, is_progress_line, on_terminal, still_running
from provision.settings import Settings
from provision.steps import FnStep, run_steps
from provision.target.local import LocalTarget


def slow(seconds: float) -> FnStep:
    def apply(target: LocalTarget, settings: Settings) -> tuple[bool, str]:
        time.sleep(seconds)
        return False, f"slept {seconds}s"

    return FnStep("slow", apply)


def test_a_step_run_without_a_terminal_says_it_is_still_running_at_each_interval() -> None:
    lines: list[str] = []
    around = partial(heartbeat, log=lines.append, interval=0.1, live=False)
    run_steps(LocalTarget(), Settings(), [slow(0.45)], lines.append, around)
    assert lines[0] == "==> slow ..." and "slow: slept 0.45s" in lines[-1]
    beats = [line for line in lines if "still running" in line]
    assert 3 <= len(beats) <= 5 and all(line.startswith("    ... slow: still running (") for line in beats)
    assert lines.index(beats[-1]) < len(lines) - 1  # no beat after the step's own line


def test_a_terminal_shows_the_step_and_its_elapsed_time_and_nested_steps_add_no_second_status() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=80)
    lines: list[str] = []
    with heartbeat("openstack.packages", log=lines.append, live=True, console=console):
        with heartbeat("inner", log=lines.append, interval=0.05, live=False):
            time.sleep(1.3)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    assert "openstack.packages ..." in text and "openstack.packages ... 1s" in text
    assert "inner" not in text and lines == []


def test_readers_of_a_log_can_tell_the_progress_lines_from_the_rest() -> None:
    assert is_progress_line(still_running("Creating image 'x'", 90.4))
    assert not is_progress_line("==> final audit") and not is_progress_line("audit of docker://x (root /mnt): clean (65.0s)")


def test_a_pipe_is_not_a_terminal() -> None:
    assert not on_terminal(io.StringIO())
