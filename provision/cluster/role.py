"""What an instance of the AMI is at this boot: the controller, a node about to join, a member, or out.

Every instance of the AMI carries the single-node cloud it was built as. Without a join
section in its user data it *is* that cloud (the controller; alone, a single node): the
per-instance jobs make its secrets, as today. With one, it must become a member of the
cluster the token names instead: the image's own cloud never starts, the controller's
shared secrets are adopted and the node keeps only its own (SSH host keys, TLS). So the
role is decided first, from the user data and the membership record on the disk, before
any per-instance job runs.

Pure: inputs in, a :class:`Decision` out, tested as a table.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import Enum
from typing import TYPE_CHECKING

from ..exceptions import JoinError

if TYPE_CHECKING:  # userdata.py needs PyYAML; this module runs on the bare standard library
    from .userdata import Join


class Role(str, Enum):
    """What the node does at this boot."""

    CONTROLLER = "controller"  # the image's own cloud: bootstrap (first boot) or follow (later boots)
    JOIN = "join"  # redeem the token, adopt the cluster, add this node's daemons
    MEMBER = "member"  # joined earlier on this instance: follow the cluster
    MEMBER_RELAUNCHED = "member-relaunched"  # a member's disk on a new instance: replace its own daemons
    OUT = "out"  # the join failed or was refused: start nothing of the cluster, say why


@dataclass(frozen=True)
class Membership:
    """What a node records once it has joined (root-only, in the state directory)."""

    node_name: str
    controller: str
    fsid: str
    token_id: str
    instance_id: str


@dataclass(frozen=True)
class Decision:
    """The role and the one line the boot log gives for it."""

    role: Role
    reason: str


def decide(join: Join | None, member: Membership | None, instance_id: str, join_error: str | None = None) -> Decision:
    """The role of this node at this boot.

    Args:
        join: the user data's join request, if any.
        member: the membership record on this disk, if any.
        instance_id: this instance's id (from the metadata).
        join_error: why the user data's join section could not be read, if it could not.
    """
    if member is not None:
        if member.instance_id != instance_id:
            return Decision(Role.MEMBER_RELAUNCHED,
                            f"{member.node_name} of cluster {member.fsid} on a new instance ({member.instance_id} -> "
                            f"{instance_id}): replacing its own monitor and OSD host through the quorum")
        extra = ""
        if join is not None and join.token.id != member.token_id:
            extra = f"; ignoring the user data's token {join.token.id}: this disk is already a member"
        return Decision(Role.MEMBER, f"{member.node_name} of cluster {member.fsid} (controller {member.controller}){extra}")
    if join_error is not None:
        return Decision(Role.OUT, f"not joining: {join_error}")
    if join is not None:
        return Decision(Role.JOIN, f"joining the cluster of controller {join.token.controller} with token {join.token.id}")
    return Decision(Role.CONTROLLER, "no join section in the user data: this instance is its own cloud (the controller)")


def dump_membership(m: Membership) -> str:
    """The membership record as JSON text (written 0600 by the caller)."""
    return json.dumps(asdict(m), indent=1, sort_keys=True) + "\n"


def load_membership(text: str) -> Membership:
    """Parse the membership record.

    Raises:
        JoinError: the record is damaged.
    """
    try:
        return Membership(**json.loads(text))
    except (ValueError, TypeError) as e:
        raise JoinError("This node's membership record is damaged",
                        hint="relaunch the node with a new join token") from e
