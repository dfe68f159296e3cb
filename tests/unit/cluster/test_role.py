"""The node's role at boot, as a table: controller, join, member, relaunched member, out."""

from __future__ import annotations

import pytest

from provision.cluster import token as tk
from provision.cluster.role import Membership, Role, decide, dump_membership, load_membership
from provision.cluster.userdata import Join
from provision.exceptions import JoinError

TOKEN, _ = tk.issue(controller="10.0.0.5", port=13443, fingerprint="ab" * 32, now=0, ttl_s=60,
                    random_id=b"\x07" * 8, random_secret=b"\x08" * 32)
OTHER, _ = tk.issue(controller="10.0.0.5", port=13443, fingerprint="ab" * 32, now=0, ttl_s=60,
                    random_id=b"\x09" * 8, random_secret=b"\x08" * 32)
MEMBER = Membership(node_name="cephdemo-2", controller="10.0.0.5", fsid="f-1", token_id=TOKEN.id, instance_id="i-1")


@pytest.mark.parametrize(
    ("join", "member", "instance", "error", "role", "words"),
    [
        (None, None, "i-1", None, Role.CONTROLLER, "its own cloud"),
        (Join(TOKEN), None, "i-1", None, Role.JOIN, f"token {TOKEN.id}"),
        (None, None, "i-1", "The join token is damaged", Role.OUT, "not joining: The join token is damaged"),
        (Join(TOKEN), MEMBER, "i-1", None, Role.MEMBER, "cephdemo-2 of cluster f-1"),
        (None, MEMBER, "i-1", None, Role.MEMBER, "controller 10.0.0.5"),
        (Join(OTHER), MEMBER, "i-1", None, Role.MEMBER, f"ignoring the user data's token {OTHER.id}"),
        (Join(TOKEN), MEMBER, "i-2", None, Role.MEMBER_RELAUNCHED, "i-1 -> i-2"),
        (None, MEMBER, "i-2", "bad", Role.MEMBER_RELAUNCHED, "replacing its own monitor"),
    ],
)
def test_the_role_at_boot(join: Join | None, member: Membership | None, instance: str, error: str | None,
                          role: Role, words: str) -> None:
    d = decide(join, member, instance, error)
    assert d.role is role
    assert words in d.reason


def test_the_membership_record_round_trips_and_a_damaged_one_is_named() -> None:
    assert load_membership(dump_membership(MEMBER)) == MEMBER
    with pytest.raises(JoinError, match="membership record is damaged"):
        load_membership('{"node_name": 1}')
