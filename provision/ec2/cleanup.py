"""Undo: a LIFO :class:`Cleanup` registry, and the idempotent removals it runs ("already gone" is
success), with the lookups by build tag, name or description that find a resource even when the
call that made it was interrupted.

An image's snapshots are found three ways, so none is left when a build is stopped while the
image is still being made: the image's block-device mappings, the description EC2 gives the
snapshots it makes for an image (``Created by CreateImage(i-...) for ami-...``, ``Copied for
DestinationAmi ami-...``), and the build-id tag the build puts on them as soon as they are listed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Collection

from botocore.exceptions import ClientError

from ..exceptions import AwsError
from ..steps import Log
from .api import GONE_CODES, aws_error, call, error_code, try_call
from .plan import BUILD_ID_TAG
from .shapes import image_snapshot_ids
from .waits import wait_instance


@dataclass
class _Action:
    """One registered removal: what it removes, how, and how a person would do it by hand."""

    label: str
    undo: Callable[[], None]
    manual: str = ""
    kind: str = ""


#: What stays with a test instance kept after a passing test stage (``keep_test_instance``): the
#: instance, the security group and key pair it was launched with, the private key that logs in.
TEST_INSTANCE_KINDS = ("test instance", "security group", "key pair", "key file")


class Cleanup:
    """A LIFO registry of what to undo: the last resource made is the first removed.

    Register a resource *before* the call that creates it (the undo looks it up
    by name or tag), so an interrupted call leaves nothing behind. Undo actions
    treat "already gone" as success, so running them twice is harmless.
    """

    def __init__(self, log: Log = print) -> None:
        self._actions: dict[int, _Action] = {}
        self._next = 0
        self.log = log

    def add(self, label: str, undo: Callable[[], None], manual: str = "", kind: str = "") -> int:
        """Register ``undo`` (what removes ``label``); return a handle for :meth:`update`/:meth:`keep`.

        Args:
            label: what will be removed (``instance i-123 in us-east-1``).
            undo: removes it; must treat "already gone" as success.
            manual: a command a person can run to remove it by hand.
            kind: what sort of resource it is (:data:`TEST_INSTANCE_KINDS`), for :meth:`keep_kinds`.
        """
        handle = self._next
        self._next += 1
        self._actions[handle] = _Action(label, undo, manual, kind)
        return handle

    def update(self, handle: int, *, label: str | None = None, manual: str | None = None) -> None:
        """Refine the label or manual command once the resource's id is known."""
        action = self._actions.get(handle)
        if action is None:
            return
        if label is not None:
            action.label = label
        if manual is not None:
            action.manual = manual

    def keep(self, handle: int) -> None:
        """Forget a registration: the resource is a result, not a temporary."""
        self._actions.pop(handle, None)

    def keep_kinds(self, kinds: Collection[str]) -> list[tuple[str, str]]:
        """Forget every registration of one of ``kinds``: they are kept; ``(label, manual command)`` of each."""
        kept = [(h, a) for h, a in sorted(self._actions.items(), reverse=True) if a.kind in kinds]
        for handle, _ in kept:
            self._actions.pop(handle)
        return [(a.label, a.manual) for _, a in kept]

    def pending(self) -> list[tuple[str, str]]:
        """``(label, manual command)`` of everything still registered, newest first."""
        return [(a.label, a.manual) for _, a in sorted(self._actions.items(), reverse=True)]

    def __len__(self) -> int:
        """How many removals are still registered."""
        return len(self._actions)

    def run(self) -> list[str]:
        """Undo everything, newest first; return one line per resource that could not be removed.

        Every action runs even when an earlier one failed or was interrupted
        (Ctrl-C during cleanup skips only the current action).
        """
        failures: list[str] = []
        for handle in sorted(self._actions, reverse=True):
            action = self._actions.pop(handle)
            try:
                action.undo()
            except KeyboardInterrupt:
                failures.append(f"{action.label}: interrupted" + (f"; remove it with: {action.manual}" if action.manual else ""))
            except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the rest
                first = str(e).splitlines()[0] if str(e) else type(e).__name__
                failures.append(f"{action.label}: {first}" + (f"; remove it with: {action.manual}" if action.manual else ""))
        return failures


def own_snapshots(client: Any, what: str, filter_name: str, value: str) -> list[str]:
    """Ids of this account's snapshots whose ``filter_name`` matches ``value`` (``what`` names the lookup in errors)."""
    filters = [{"Name": filter_name, "Values": [value]}]
    snaps = call(client, what, "describe_snapshots", OwnerIds=["self"], Filters=filters).get("Snapshots", [])
    return [s["SnapshotId"] for s in snaps]


def snapshots_made_for(client: Any, ami_id: str, region: str) -> list[str]:
    """This account's snapshots whose description names ``ami_id`` (those EC2 made for that image)."""
    return own_snapshots(client, f"look up the snapshots of {ami_id} in {region}", "description", f"*{ami_id}*")


def image_snapshots(client: Any, ami_id: str, region: str) -> list[str]:
    """Every snapshot behind ``ami_id`` known so far: its block-device mappings, then those made for it."""
    resp = try_call(client, f"describe image {ami_id} in {region}", "describe_images", ignore=GONE_CODES, ImageIds=[ami_id])
    images = (resp or {}).get("Images", [])
    return list(dict.fromkeys([*(image_snapshot_ids(images[0]) if images else []), *snapshots_made_for(client, ami_id, region)]))


def delete_image(client: Any, ami_id: str, region: str, snapshot_ids: Collection[str] = ()) -> bool:
    """Deregister an image, then delete its snapshots; True if anything was removed.

    "Already gone" is success. Snapshots are looked up before the image is
    deregistered (they cannot be deleted while it is registered): its mappings and the
    snapshots EC2 made for it (see :func:`image_snapshots`); ``snapshot_ids`` adds any
    that are already known.
    """
    removed = False
    resp = try_call(client, f"describe image {ami_id} in {region}", "describe_images", ignore=GONE_CODES, ImageIds=[ami_id])
    images = (resp or {}).get("Images", [])
    made_for = snapshots_made_for(client, ami_id, region)
    snaps = list(dict.fromkeys([*(image_snapshot_ids(images[0]) if images else []), *made_for, *snapshot_ids]))
    if images and images[0].get("State") != "deregistered":
        try_call(client, f"deregister image {ami_id} in {region}", "deregister_image", ignore=GONE_CODES, ImageId=ami_id)
        removed = True
    for snap in snaps:
        if try_call(client, f"delete snapshot {snap} in {region}", "delete_snapshot", ignore=GONE_CODES, SnapshotId=snap) is not None:
            removed = True
    return removed


def deregister(client: Any, ami_id: str, region: str) -> list[str]:
    """``ami.deregister``: deregister one image of this account and delete its snapshots; what was removed.

    Raises:
        AwsError: the image is not registered in ``region`` (or EC2 refused).
    """
    images = call(client, f"describe image {ami_id} in {region}", "describe_images", ImageIds=[ami_id]).get("Images", [])
    if not images or images[0].get("State") == "deregistered":
        raise AwsError(f"Image {ami_id} is not registered in {region}", hint="check the id and --region")
    snaps = image_snapshots(client, ami_id, region)
    call(client, f"deregister image {ami_id} in {region}", "deregister_image", ImageId=ami_id)
    removed = [f"image {ami_id} ({images[0].get('Name', '')})"]
    for snap in snaps:
        if try_call(client, f"delete snapshot {snap} in {region}", "delete_snapshot", ignore=GONE_CODES, SnapshotId=snap) is not None:
            removed.append(f"snapshot {snap}")
    return removed


def delete_snapshots_once_deregistered(client: Any, ami_id: str, snapshot_ids: Collection[str], region: str) -> None:
    """Finish an image's removal that was cut short: delete its snapshots if the image is no longer registered.

    While the image is still registered nothing is touched: it is not this build's to remove.
    """
    resp = try_call(client, f"describe image {ami_id} in {region}", "describe_images", ignore=GONE_CODES, ImageIds=[ami_id])
    images = (resp or {}).get("Images", [])
    if images and images[0].get("State") != "deregistered":
        return
    for snap in snapshot_ids:
        try_call(client, f"delete snapshot {snap} in {region}", "delete_snapshot", ignore=GONE_CODES, SnapshotId=snap)


def images_of_build(client: Any, build_id: str, region: str, name: str | None = None) -> list[dict[str, Any]]:
    """This account's registered images tagged with ``build_id`` (and called ``name``)."""
    filters = [{"Name": f"tag:{BUILD_ID_TAG}", "Values": [build_id]}]
    if name is not None:
        filters.append({"Name": "name", "Values": [name]})
    images = call(
        client, f"look up images of build {build_id} in {region}", "describe_images", Owners=["self"], Filters=filters
    ).get("Images", [])
    return [dict(i) for i in images if i.get("State") != "deregistered"]


def snapshots_of_build(client: Any, build_id: str, region: str) -> list[str]:
    """Ids of this account's snapshots tagged with ``build_id``."""
    return own_snapshots(client, f"look up snapshots of build {build_id} in {region}", f"tag:{BUILD_ID_TAG}", build_id)


def delete_leftover_snapshots(client: Any, build_id: str, region: str) -> list[str]:
    """Delete the snapshots tagged with ``build_id`` that no registered image of the build uses; return them.

    What an interrupted build leaves of an image it had begun: snapshots of a
    deregistered (or never finished) image. Those of an image the build keeps are spared.
    """
    in_use = {snap for image in images_of_build(client, build_id, region) for snap in image_snapshot_ids(image)}
    leftovers = [snap for snap in snapshots_of_build(client, build_id, region) if snap not in in_use]
    for snap in leftovers:
        try_call(client, f"delete snapshot {snap} in {region}", "delete_snapshot", ignore=GONE_CODES, SnapshotId=snap)
    return leftovers


def instances_of_build(client: Any, build_id: str, region: str) -> list[str]:
    """Ids of instances tagged with ``build_id`` that are not terminated."""
    resp = call(
        client,
        f"look up instances of build {build_id} in {region}",
        "describe_instances",
        Filters=[
            {"Name": f"tag:{BUILD_ID_TAG}", "Values": [build_id]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped", "shutting-down"]},
        ],
    )
    return [i["InstanceId"] for r in resp.get("Reservations", []) for i in r.get("Instances", [])]


def terminate_instances(
    client: Any,
    instance_ids: Collection[str],
    region: str,
    *,
    delay: float,
    attempts: int,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Terminate instances, then wait (bounded) until they are terminated; "already gone" is success.

    The termination is requested by id first: no lookup precedes it that could fail and
    leave the instance running.

    Raises:
        AwsError: the termination was refused, or could not be confirmed within the bounds
            (the message says which instance; the caller reports how to finish by hand).
    """
    if not instance_ids:
        return
    for iid in instance_ids:
        try_call(client, f"terminate instance {iid} in {region}", "terminate_instances", ignore=GONE_CODES, InstanceIds=[iid])
    for iid in instance_ids:
        try:
            wait_instance(client, iid, "terminated", region=region, delay=delay, attempts=attempts, sleep=sleep)
        except AwsError as e:
            raise AwsError(f"Termination of {iid} requested but not confirmed: {e.message}", hint=e.hint) from e


def delete_security_group(
    client: Any,
    group_id: str,
    region: str,
    *,
    delay: float,
    attempts: int,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Delete a security group, retrying while EC2 still sees it in use; "already gone" is success."""
    for attempt in range(1, max(1, attempts) + 1):
        try:
            client.delete_security_group(GroupId=group_id)
            return
        except ClientError as e:
            code = error_code(e)
            if code in GONE_CODES:
                return
            if code != "DependencyViolation" or attempt >= attempts:
                raise aws_error(f"delete security group {group_id} in {region}", e) from e
        sleep(delay)


def security_group_by_name(client: Any, name: str, vpc_id: str | None) -> str | None:
    """The id of the security group called ``name`` (in ``vpc_id``), or None."""
    filters = [{"Name": "group-name", "Values": [name]}]
    if vpc_id:
        filters.append({"Name": "vpc-id", "Values": [vpc_id]})
    groups = call(client, f"look up security group {name}", "describe_security_groups", Filters=filters).get("SecurityGroups", [])
    return groups[0]["GroupId"] if groups else None
