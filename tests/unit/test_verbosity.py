"""-q and -v (issue 17 point 1): a quiet run shows only problems and no progress at all; a verbose
one also each command a target ran, with its exit status; the tasks take both flags."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from functools import partial
from typing import Iterator

import pytest
from rich.console import Console

from provision import verbosity
from provision.exceptions import ConfigError
from provision.progress import heartbeat
from provision.settings import Settings
from provision.steps import FnStep, run_steps
from provision.target.base import TRACE_CHARS
from provision.target.local import LocalTarget


@pytest.fixture(autouse=True)
def back_to_normal() -> Iterator[None]:
    yield
    verbosity.apply(verbosity.NORMAL, print)


def test_the_flags_give_a_level_and_both_together_are_refused() -> None:
    assert verbosity.level() == verbosity.NORMAL
    assert verbosity.level(quiet=True) == verbosity.QUIET and verbosity.level(verbose=True) == verbosity.VERBOSE
    with pytest.raises(ConfigError, match="opposite"):
        verbosity.level(quiet=True, verbose=True)


def test_a_quiet_run_of_steps_shows_only_its_problems_and_no_progress() -> None:
    lines: list[str] = []
    log = verbosity.leveled(lines.append, verbosity.QUIET)
    verbosity.apply(verbosity.QUIET, log)

    def slow(target: LocalTarget, settings: Settings) -> tuple[bool, str]:
        time.sleep(0.35)
        log("warning: the disk is nearly full")
        return True, "made it"

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=80)
    run_steps(LocalTarget(), Settings(), [FnStep("slow", slow)], log, partial(heartbeat, log=log, interval=0.1, live=False))
    with heartbeat("on a terminal", log=log, live=True, console=console):
        time.sleep(0.2)
    log("!!! Build failed: the builder did not answer")
    assert lines == ["warning: the disk is nearly full", "!!! Build failed: the builder did not answer"]
    assert out.getvalue() == ""


def test_a_verbose_run_traces_each_command_with_its_exit_status() -> None:
    lines: list[str] = []
    verbosity.apply(verbosity.VERBOSE, lines.append)
    t = LocalTarget()
    t.run(["sh", "-c", "exit 3"], check=False)
    t.run(["echo", "x" * (TRACE_CHARS * 2)])
    assert lines[0].startswith("    $ [local] sh -c 'exit 3' -> 3 (") and lines[0].endswith("s)")
    assert "... (" in lines[1] and len(lines[1]) < TRACE_CHARS + 60  # a long command line is cut
    verbosity.apply(verbosity.NORMAL, lines.append)
    t.run(["true"])
    assert len(lines) == 2  # the default level traces nothing


def test_the_long_tasks_take_both_flags_and_refuse_them_together() -> None:
    helps = subprocess.run([sys.executable, "-m", "invoke", "--help", "sim.up"], capture_output=True, text=True, check=True).stdout
    assert "-q, --quiet" in helps and "-v, --verbose" in helps
    r = subprocess.run([sys.executable, "-m", "invoke", "sim.reboot", "-q", "-v"], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.startswith("error: -q (quiet) and -v (verbose) ask for opposite things")
    assert "Traceback" not in r.stderr
