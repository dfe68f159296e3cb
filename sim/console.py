"""The instance's console through the EC2 API: ``GetConsoleOutput`` answers what the container's
systemd and our units printed to the console (Docker keeps it as the container's log), as EC2 does
for an instance's serial console: base64, the latest output last, at most the last 64 KiB.

moto answers a canned Xen boot log from 2006 for every instance; the sim daemon replaces that
answer with :func:`install`.
"""

from __future__ import annotations

from typing import Any, Callable

#: EC2 returns up to the last 64 KiB of an instance's console output.
MAX_BYTES = 64 * 1024


def tail(raw: bytes, limit: int = MAX_BYTES) -> str:
    """The last ``limit`` bytes of a console log as text, starting at a line boundary."""
    if len(raw) > limit:
        raw = raw[-limit:]
        cut = raw.find(b"\n")
        raw = raw[cut + 1 :] if 0 <= cut < len(raw) - 1 else raw
    return raw.decode("utf-8", errors="replace")


def docker_console(container_of: Callable[[str], str]) -> Callable[[str], str | None]:
    """A reader of an instance's console: the log of its container (None when there is no container)."""
    import docker
    from docker.errors import DockerException, NotFound

    client = docker.from_env(timeout=30)

    def read(instance_id: str) -> str | None:
        try:
            raw = client.containers.get(container_of(instance_id)).logs(stdout=True, stderr=True)
        except NotFound:
            return None
        except DockerException:
            return None
        return tail(raw)

    return read


def install(read: Callable[[str], str | None]) -> None:
    """Make moto's GetConsoleOutput answer ``read(instance_id)`` (moto's own answer when it gives None)."""
    from moto.core.responses import ActionResult
    from moto.core.utils import utcnow
    from moto.ec2.responses.general import General
    from moto.ec2.utils import Base64EncodedString

    canned = General.get_console_output

    def get_console_output(self: Any) -> ActionResult:
        instance = self.ec2_backend.get_instance(self._get_param("InstanceId"))  # InvalidInstanceID.NotFound as EC2
        text = read(instance.id)
        if text is None:
            return canned(self)
        return ActionResult({"InstanceId": instance.id, "Timestamp": utcnow(), "Output": Base64EncodedString.from_raw_string(text)})

    General.get_console_output = get_console_output  # type: ignore[method-assign]
