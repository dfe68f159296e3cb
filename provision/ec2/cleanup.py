"""Undo: a LIFO :class:`Cleanup` registry, and the idempotent removals it runs ("already gone" is
success), with the lookups by build tag or name that find a resource even when the call that made
it was interrupted."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Collection

from botocore.exceptions import ClientError

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

    def add(self, label: str, undo: Callable[[], None], manual: str = "") -> int:
        """Register ``undo`` (what removes ``label``); return a handle for :meth:`update`/:meth:`keep`.

        Args:
            label: what will be removed (``instance i-123 in us-east-1``).
            undo: removes it; must treat "already gone" as success.
            manual: a command a person can run to remove it by hand.
        """
        handle = self._next
        self._next += 1
        self._actions[handle] = _Action(label, undo, manual)
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


def delete_image(client: Any, ami_id: str, region: str, snapshot_ids: Collection[str] = ()) -> bool:
    """Deregister an image, then delete its snapshots; True if anything was removed.

    "Already gone" is success. Snapshots are read from the image before it is
    deregistered (they cannot be deleted while it is registered); ``snapshot_ids``
    adds any that are already known.
    """
    removed = False
    resp = try_call(client, f"describe image {ami_id} in {region}", "describe_images", ignore=GONE_CODES, ImageIds=[ami_id])
    images = (resp or {}).get("Images", [])
    snaps = list(dict.fromkeys([*(image_snapshot_ids(images[0]) if images else []), *snapshot_ids]))
    if images and images[0].get("State") != "deregistered":
        try_call(client, f"deregister image {ami_id} in {region}", "deregister_image", ignore=GONE_CODES, ImageId=ami_id)
        removed = True
    for snap in snaps:
        if try_call(client, f"delete snapshot {snap} in {region}", "delete_snapshot", ignore=GONE_CODES, SnapshotId=snap) is not None:
            removed = True
    return removed


def images_of_build(client: Any, build_id: str, region: str) -> list[str]:
    """Ids of this account's images tagged with ``build_id``."""
    images = call(
        client,
        f"look up images of build {build_id} in {region}",
        "describe_images",
        Owners=["self"],
        Filters=[{"Name": f"tag:{BUILD_ID_TAG}", "Values": [build_id]}],
    ).get("Images", [])
    return [i["ImageId"] for i in images]


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
    """Terminate instances and wait until they are terminated; "already gone" is success."""
    if not instance_ids:
        return
    for iid in instance_ids:
        try_call(client, f"terminate instance {iid} in {region}", "terminate_instances", ignore=GONE_CODES, InstanceIds=[iid])
    for iid in instance_ids:
        wait_instance(client, iid, "terminated", region=region, delay=delay, attempts=attempts, sleep=sleep)


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
