"""SIGTERM and SIGHUP as Ctrl-C for the length of a build, with real signals sent to this process."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from provision.ec2.plan import BuilderHost
from provision.ec2.signals import TERMINATING, Interrupted, SignalGuard

from .helpers import inventory, options, run_build


def _deliver(sig: int) -> None:
    os.kill(os.getpid(), sig)
    for _ in range(100):  # the Python handler runs in the main thread at the next bytecode boundary
        time.sleep(0.001)


@pytest.fixture
def own_handlers() -> Iterator[list[int]]:
    """Handlers of the test's own for SIGTERM and SIGHUP (recording what they get), restored afterwards."""
    got: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in TERMINATING}

    def record(signum: int, frame: Any) -> None:
        got.append(signum)

    for sig in TERMINATING:
        signal.signal(sig, record)
    yield got
    for sig, handler in previous.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("sig", TERMINATING, ids=lambda s: signal.Signals(s).name)
def test_a_signal_inside_the_guard_is_ctrl_c_and_the_previous_handler_comes_back(sig: int, own_handlers: list[int]) -> None:
    before = {s: signal.getsignal(s) for s in TERMINATING}
    with pytest.raises(KeyboardInterrupt, match=f"{signal.Signals(sig).name} received") as e, SignalGuard(log=lambda line: None):
        assert all(signal.getsignal(s) is not before[s] for s in TERMINATING)
        _deliver(sig)
    assert isinstance(e.value, Interrupted)
    assert {s: signal.getsignal(s) for s in TERMINATING} == before
    _deliver(sig)  # after the guard, the test's own handler gets it again
    assert own_handlers == [sig]


def test_shielded_signals_are_noted_then_raised_once(own_handlers: list[int]) -> None:
    logs: list[str] = []
    with SignalGuard(log=logs.append) as guard:
        with guard.shield():
            _deliver(signal.SIGTERM)
            _deliver(signal.SIGHUP)
            done = True  # the shielded block ran to its end
        assert done and guard.pending == "SIGTERM"
        assert logs == ["!!! SIGTERM received: finishing the cleanup first", "!!! SIGHUP received: finishing the cleanup first"]
        with pytest.raises(Interrupted, match="SIGTERM received during the cleanup"):
            guard.raise_pending()
        guard.raise_pending()  # once
    assert own_handlers == []


def test_outside_the_main_thread_the_guard_does_nothing(own_handlers: list[int]) -> None:
    seen: dict[str, Any] = {}

    def body() -> None:
        with SignalGuard(log=lambda line: None):
            seen["handler"] = signal.getsignal(signal.SIGTERM)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert seen["handler"] is signal.getsignal(signal.SIGTERM)


def test_the_build_holds_the_handlers_only_while_it_runs(tmp_path: Path, ec2: Any, source_ami: str, own_handlers: list[int]) -> None:
    before = {s: signal.getsignal(s) for s in TERMINATING}
    during: dict[int, Any] = {}

    def provision(host: BuilderHost) -> None:
        during.update({s: signal.getsignal(s) for s in TERMINATING})

    run_build(options(tmp_path), provision)
    assert all(during[s] is not before[s] for s in TERMINATING)
    assert {s: signal.getsignal(s) for s in TERMINATING} == before


def test_sigterm_while_provisioning_cleans_up_and_ends_as_ctrl_c(tmp_path: Path, ec2: Any, source_ami: str, own_handlers: list[int]) -> None:
    before = inventory()
    logs: list[str] = []
    with pytest.raises(KeyboardInterrupt, match="SIGTERM received"):
        run_build(options(tmp_path), lambda host: _deliver(signal.SIGTERM), log=logs.append)
    assert inventory() == before
    assert "!!! Build interrupted: SIGTERM received" in logs
    assert own_handlers == []  # the build's handler took it, not the test's
