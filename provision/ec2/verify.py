"""The build's test stage: an instance of the new image is launched, found ready, rebooted, found
ready again and its console read, before anything makes the image public or copies it.

EC2 Image Builder runs such a stage before distribution; Packer users add one by hand. Here it
runs between ``create_image`` and ``publish``: a failure ends the build as any failure does (the
image is removed with ``on_error=cleanup``, kept private with ``abort``), with the failed check
and the console's last lines. What is checked:

* the instance passes every readiness check (bounded wait), once after its first boot and once
  after an EC2 reboot (a boot marker proves the reboot happened);
* its SSH host key is not the builder's (host keys are made per instance, never baked in);
* its console (GetConsoleOutput, as the owner reads it) has the admin-password line after the
  first boot. It is read before the reboot: EC2 keeps only the last 64 KiB of a console, posted
  shortly after a state change, so a reboot's output may push the first boot's line out (as in
  the simulation, whose console is the container's terminal); the line may also appear a while
  after the instance is ready, so the read is repeated (bounded) until it is there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..exceptions import ConnectError, ImageTestFailed, ProvisionError
from ..openstack.dashboard import CONSOLE_PASSWORD_LINE, admin_password_on
from .plan import BuilderHost

#: Console lines given with a failure.
CONSOLE_TAIL_LINES = 25


@dataclass(frozen=True)
class Booted:
    """One boot of an instance, as its readiness check saw it.

    Attributes:
        marker: differs at every boot (the kernel's boot id and PID 1's start time).
        host_key: the SSH host key it answered with (``TYPE BASE64``).
    """

    marker: str
    host_key: str


@dataclass(frozen=True)
class TestStage:
    """What the test stage does on an instance; the caller of the build gives it.

    Attributes:
        ready: waits (bounded) until the instance passes every readiness check; how it booted.
        host_key: the SSH host key a host answers with (read from the builder before it is scrubbed).
        reboot: reboots an instance; default: EC2 ``RebootInstances`` (the simulation also
            restarts the container that is the instance).
        console: reads an instance's console; default: EC2 ``GetConsoleOutput``, as the owner reads it.
    """

    ready: Callable[[BuilderHost], Booted]
    host_key: Callable[[BuilderHost], str]
    reboot: Callable[[str], None] | None = None
    console: Callable[[str], str] | None = None


def console_tail(console: str, lines: int = CONSOLE_TAIL_LINES) -> str:
    """The console's last lines, the admin password replaced (a failure's message is printed and logged)."""
    redacted = CONSOLE_PASSWORD_LINE.sub(lambda m: m.group(0)[: m.start(1) - m.start(0)] + "<redacted>", console)
    return "\n".join(redacted.splitlines()[-lines:])


def findings(builder_key: str | None, first: Booted, second: Booted, console: str) -> list[str]:
    """What the test instance got wrong (empty: it passed)."""
    found = []
    if builder_key and first.host_key == builder_key:
        found.append("the test instance answered SSH with the builder's host key: host keys were baked into the image")
    if second.marker == first.marker:
        found.append("the reboot did not happen (the boot marker did not change)")
    if admin_password_on(console) is None:
        found.append("the console has no admin-password line after the first boot")
    return found


def wait_console_line(read: Callable[[str], str], instance_id: str, attempts: int, sleep: Callable[[float], None], delay: float) -> str:
    """Read the console until it has the admin-password line (EC2 posts console output a while after
    a boot) or ``attempts`` reads were made; the last console read."""
    console = ""
    for n in range(max(1, attempts)):
        console = read(instance_id)
        if admin_password_on(console) is not None or n == attempts - 1:
            break
        sleep(delay)
    return console


def wait_rebooted(ready: Callable[[BuilderHost], Booted], host: BuilderHost, before: Booted, attempts: int, sleep: Callable[[float], None],
                  delay: float) -> Booted:
    """Call ``ready`` until it reports a boot other than ``before`` (the reboot may not have begun yet); the new boot."""
    last: Booted = before
    error: ProvisionError | None = None
    for _ in range(max(1, attempts)):
        try:
            last = ready(host)
            error = None
        except ConnectError as e:  # down while it reboots
            error = e
        if last.marker != before.marker:
            return last
        sleep(delay)
    if error is not None:
        raise ImageTestFailed(f"The test instance {host.instance_id} did not come back after its reboot: {error.message}",
                              hint="see its console: aws ec2 get-console-output --instance-id " + host.instance_id)
    return last
