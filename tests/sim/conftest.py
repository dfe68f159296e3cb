"""The simulation, brought up once per test session (the expensive part), torn down at the end.

The session takes over the machine's sim: any sim already running is replaced (with
``COA_TEST_REUSE_SIM=1``, a ready one is used as it is and left running).
"""

from __future__ import annotations

import os
from typing import Any, Iterator

import pytest

from provision.settings import Settings
from provision.target import Target


class SimHandle:
    """What sim tests use: the current instance's target and status, reboot and relaunch."""

    def __init__(self, sim: Any) -> None:
        self._sim = sim
        self.settings: Settings = sim.settings

    @property
    def target(self) -> Target:
        """A Target into the current instance (follows relaunches)."""
        return self._sim.target()

    @property
    def container(self) -> str:
        """The current instance's container name."""
        return self._sim.state.container

    def status(self) -> dict[str, Any]:
        """Same as `invoke sim.status --json`."""
        return self._sim.status()

    def ec2(self) -> Any:
        """boto3 EC2 client on the sim's moto."""
        return self._sim.ec2()

    def up(self, ami: str | None = None) -> dict[str, Any]:
        """A new instance (from ``ami`` when given); returns when ready."""
        return self._sim.up(ami=ami)

    def reboot(self, wait: bool = True) -> dict[str, Any]:
        """Same instance, same IP; returns when ready (or at once with ``wait=False``)."""
        return self._sim.reboot(wait=wait)

    def relaunch(self, wait: bool = True) -> dict[str, Any]:
        """New instance from this disk; returns when ready (or at once with ``wait=False``)."""
        return self._sim.relaunch(wait=wait)

    def down(self) -> list[str]:
        """Remove everything the sim made."""
        return self._sim.down()


@pytest.fixture(scope="session")
def sim(docker_client: Any) -> Iterator[SimHandle]:
    """A provisioned, ready simulated instance (built once per session)."""
    from sim.lifecycle import Sim

    s = Sim(Settings(), log=print)
    if os.environ.get("COA_TEST_REUSE_SIM") == "1" and s.state.instance_id and s.status().get("ready"):
        # For working on one test: use the running sim as it is, and leave it running.
        yield SimHandle(s)
        return
    s.down()
    s.up()
    yield SimHandle(s)
    Sim(Settings(), log=print).down()
