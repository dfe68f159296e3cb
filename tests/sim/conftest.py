"""The simulation, brought up once per test session (the expensive part), torn down at the end.

The session's instance is what a user of the AMI gets: the session runs the real build
(`invoke build.ami --sim --public --keep-test-instance`: a builder provisioned over SSH, scrubbed,
audited, imaged, then the test stage: a new instance of the image ready, its console read,
rebooted, ready again) and keeps the test stage's instance as the sim's instance, so CI boots the
AMI no more often than it would without a test stage (issue 16, point 7). OpenStack is provisioned
once per session, and every sim test checks an instance of a built image. That instance has no
user-data; test_yy's new instance of the AMI gets a ``#cloud-config`` (:data:`USER_DATA`, which
cloud-init acts on at the first boot of each instance, as a user's would). The build's output is
kept in ``build/test-session-build.log`` (follow it with ``tail -f`` while the session starts).

The session takes over the machine's sim: any sim already running is replaced (with
``COA_TEST_REUSE_SIM=1``, a ready one is used as it is and left running).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from provision.settings import Settings
from provision.target import Target

#: What the session's instances are launched with (RunInstances ``UserData``): a file written by
#: cloud-init's ``write_files`` and, by ``runcmd`` (once per instance), the instance-id cloud-init read.
USER_DATA_FILE = "/var/tmp/coa-test-user-data"
RUNCMD_FILE = "/var/tmp/coa-test-runcmd"
USER_DATA = f"""#cloud-config
write_files:
  - path: {USER_DATA_FILE}
    permissions: "0644"
    content: |
      written by cloud-init from the user-data
runcmd:
  - [sh, -c, "cloud-init query instance_id > {RUNCMD_FILE}"]
"""


class SimHandle:
    """What sim tests use: the current instance's target and status, reboot and relaunch."""

    def __init__(self, sim: Any, built: dict[str, Any] | None) -> None:
        self._sim = sim
        self.settings: Settings = sim.settings
        #: The session's build: ``ami`` (its id) and ``stdout`` (the task's output); None when unknown.
        self.built = built

    @property
    def target(self) -> Target:
        """A Target into the current instance (follows relaunches)."""
        return self._sim.target()

    @property
    def container(self) -> str:
        """The current instance's container name."""
        return self._sim.state.container

    def image_of(self, ami: str) -> tuple[str, str | None]:
        """The Docker image and the data-disk volume the sim keeps as the content of ``ami``."""
        return self._sim.state.images[ami], self._sim.state.disks.get(ami)

    def status(self, checks: bool = True) -> dict[str, Any]:
        """Same as `invoke sim.status --json --check` (without ``checks``: `--json`, no readiness checks)."""
        return self._sim.status(checks=checks)

    def ec2(self) -> Any:
        """boto3 EC2 client on the sim's moto."""
        return self._sim.ec2()

    def up(self, ami: str | None = None, user_data: str | None = None) -> dict[str, Any]:
        """A new instance (from ``ami`` when given, with ``user_data``); returns when ready."""
        return self._sim.up(ami=ami, user_data=user_data)

    def reboot(self, wait: bool = True) -> dict[str, Any]:
        """Same instance, same IP; returns when ready (or at once with ``wait=False``)."""
        return self._sim.reboot(wait=wait)

    def stop(self) -> dict[str, Any]:
        """Stop the instance (same id and private IP; a new public name when it starts)."""
        return self._sim.stop()

    def start(self, wait: bool = True) -> dict[str, Any]:
        """Start the stopped instance; returns when ready (or at once with ``wait=False``)."""
        return self._sim.start(wait=wait)

    def relaunch(self, wait: bool = True) -> dict[str, Any]:
        """New instance from this disk; returns when ready (or at once with ``wait=False``)."""
        return self._sim.relaunch(wait=wait)

    def console(self) -> str:
        """The current instance's console output, through the EC2 API (GetConsoleOutput), as an owner reads it."""
        return str(self._sim.console())

    def login_user(self) -> str:
        """The login user cloud-init made on the instance (``admin`` on Debian 12)."""
        return str(self._sim.login_user())

    @property
    def key_path(self) -> str:
        """The private key of the sim's EC2 key pair (the instances are launched with it)."""
        return str(self._sim.state.key_path)

    def status_ids(self) -> dict[str, Any]:
        """The current instance's ids, without running the readiness checks."""
        return {"instance_id": self._sim.state.instance_id, "container": self._sim.state.container}

    def wait_ready(self) -> dict[str, Any]:
        """Wait until the current instance is ready (after ``reboot``/``relaunch`` with ``wait=False``); its status."""
        from provision.ready import wait_ready
        from sim.instance import wait_for_systemd

        wait_for_systemd(self.target, timeout=600)
        wait_ready(self.target, self.settings, log=print)
        return self._sim.status()

    def down(self) -> list[str]:
        """Remove everything the sim made."""
        return self._sim.down()


BUILD_LOG = Path("build/test-session-build.log")
AMI_LINE = re.compile(r"^us-east-1: (ami-[0-9a-f]+)$", re.M)


def build_ami() -> dict[str, Any]:
    """Run the real task, `invoke build.ami --sim --public --keep-test-instance`; its AMI id and output."""
    BUILD_LOG.parent.mkdir(parents=True, exist_ok=True)
    with BUILD_LOG.open("w") as out:
        r = subprocess.run([sys.executable, "-m", "invoke", "build.ami", "--sim", "--public", "--keep-test-instance"],
                           stdout=out, stderr=subprocess.STDOUT, text=True)
    built = last_build()
    if r.returncode != 0 or built is None:
        pytest.fail(f"`invoke build.ami --sim --public --keep-test-instance` failed (exit {r.returncode}); "
                    f"its output is in {BUILD_LOG}:\n{BUILD_LOG.read_text()[-4000:]}")
    return built


def last_build() -> dict[str, Any] | None:
    """The build recorded in the build log (this session's, or an earlier one's for COA_TEST_REUSE_SIM=1)."""
    text = BUILD_LOG.read_text() if BUILD_LOG.exists() else ""
    m = AMI_LINE.search(text)
    return {"ami": m.group(1), "stdout": text} if m else None


@pytest.fixture(scope="session")
def sim(docker_client: Any) -> Iterator[SimHandle]:
    """A ready instance of an AMI built in this session (build and launch once per session)."""
    from sim.lifecycle import Sim

    s = Sim(Settings(), log=print)
    if os.environ.get("COA_TEST_REUSE_SIM") == "1" and s.state.instance_id and s.status().get("ready"):
        # For working on one test: use the running sim as it is, and leave it running.
        yield SimHandle(s, last_build())
        return
    s.down(keep_amis=False)  # the session's AMIs are its own: none from before
    built = build_ami()
    s = Sim(Settings(), log=print)  # the state the build left: network, daemon, its AMI, its tested instance
    status = s.status()
    if not (status.get("ready") and status.get("ami_id") == built["ami"]):
        pytest.fail(f"the build's kept test instance is not the sim's ready instance of {built['ami']}: {status}")
    yield SimHandle(s, built)
    Sim(Settings(), log=print).down(keep_amis=False)
