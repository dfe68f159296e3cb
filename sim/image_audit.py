"""The last gate of ``build.ami --sim``: the secrets audit of the committed image itself, not of the builder.

An AMI of the simulation is a Docker image (the stopped builder's root disk, committed)
plus a volume (its data disk, :data:`sim.container.DATA_DISK_PATH`). :func:`image_root`
opens both without booting anything: a container of the image runs ``sleep`` (no systemd,
no network), the data disk mounted read-only where the instance has it, and the image's
own root bind-mounted read-only at :data:`MOUNT`. Docker mounts its own ``/etc/hosts``,
``/etc/hostname`` and ``/etc/resolv.conf`` over the image's, and ``/proc``, ``/sys``,
``/dev`` over its directories; a plain (non-recursive) bind of ``/`` shows the image's files
underneath, so the audit (``root=MOUNT``) reads exactly what the AMI holds.
:func:`audit_image` runs the build's gate (:func:`provision.image.prepare.final_audit`) there;
on a finding the image is forgotten (Docker image and data-disk volume removed) and the
build fails before the image is published.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from provision.exceptions import AuditFailed, SimError
from provision.image.audit import AuditReport
from provision.image.prepare import final_audit
from provision.settings import Settings
from provision.steps import Log
from provision.target.docker import DockerTarget

from .cloud import labels
from .container import DATA_DISK_PATH, RUN_OPTIONS
from .state import SimState

#: Where the image's root is bind-mounted in the inspecting container.
MOUNT = "/mnt/coa-image"
#: Bind-mount the image's root (and data disk) read-only at MOUNT.
_MOUNT_SCRIPT = (
    f"mkdir -p {MOUNT} && mount --bind / {MOUNT} && mount -o remount,bind,ro {MOUNT}"
    f" && if [ -d {DATA_DISK_PATH} ] && [ -d {MOUNT}{DATA_DISK_PATH} ]; then mount --bind {DATA_DISK_PATH} {MOUNT}{DATA_DISK_PATH}; fi"
)


@contextlib.contextmanager
def image_root(docker: Any, image: str, disk: str | None = None) -> Iterator[DockerTarget]:
    """A Target into a non-booting container of ``image`` whose :data:`MOUNT` is the image's root (and data disk).

    Args:
        docker: the Docker SDK client.
        image: the image (tag or id).
        disk: the data-disk volume, mounted read-only at :data:`DATA_DISK_PATH` (none: root disk only).

    Raises:
        SimError: the image's root cannot be mounted in the container.
    """
    volumes = {disk: {"bind": DATA_DISK_PATH, "mode": "ro"}} if disk else {}
    container = docker.containers.run(
        image, ["sleep", "infinity"], entrypoint=[], detach=True, network_mode="none", volumes=volumes,
        cap_add=["SYS_ADMIN"], security_opt=RUN_OPTIONS["security_opt"], labels=labels(kind="audit"),
    )
    try:
        target = DockerTarget(container.name, client=docker)
        r = target.run(["sh", "-c", _MOUNT_SCRIPT], check=False)
        if not r.ok:
            raise SimError(f"Cannot mount the root of {image} in {container.name}: {r.stderr.strip()}",
                           hint="the audit container needs CAP_SYS_ADMIN and no AppArmor/seccomp confinement")
        yield target
    finally:
        container.remove(force=True)


def forget_image(docker: Any, state: SimState, ami: str) -> None:
    """Remove the Docker image and data-disk volume the sim keeps for ``ami`` (an image that failed its gate)."""
    from docker.errors import NotFound

    tag, disk = state.images.pop(ami, None), state.disks.pop(ami, None)
    with contextlib.suppress(NotFound):
        if tag:
            docker.images.remove(tag, force=True)
    with contextlib.suppress(NotFound):
        if disk:
            docker.volumes.get(disk).remove(force=True)
    state.save()


def audit_image(docker: Any, state: SimState, ami: str, settings: Settings, log: Log = print) -> AuditReport:
    """The gate on the committed image of ``ami`` (its root disk and data disk); AuditFailed on any finding.

    Raises:
        AuditFailed: a finding; the image is forgotten first (see :func:`forget_image`).
        SimError: the sim holds no image for ``ami``, or it cannot be mounted.
    """
    if ami not in state.images:
        raise SimError(f"The sim holds no image for {ami}", hint="the build commits the builder right after create_image")
    with image_root(docker, state.images[ami], state.disks.get(ami)) as target:
        try:
            return final_audit(target, settings, log, root=MOUNT, what=f"final audit of the committed image {ami}")
        except AuditFailed:
            forget_image(docker, state, ami)
            raise
