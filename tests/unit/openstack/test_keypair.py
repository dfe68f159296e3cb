"""The demo server's key pair follows the instance's EC2 key: planned as a table."""

from __future__ import annotations

import pytest

from provision.openstack.keypair import key_identity, plan_keypair

A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH7b6YRX+oFdjQRIhVwcMPhhHnE6nFOmDQA++MO9cb0I builder"
B = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 owner"


def test_the_identity_is_type_and_key_not_the_comment() -> None:
    assert key_identity(A) == key_identity(A.replace("builder", "other") + "\n")
    assert key_identity(None) is None and key_identity("") is None and key_identity("garbage") is None


@pytest.mark.parametrize(
    ("existing", "wanted", "delete", "create"),
    [
        (None, A, False, True),          # first boot: make it
        (A, A + "\n", False, False),     # a reboot: keep it
        (A, B, True, True),              # a new instance with another key: replace it
        (A, None, True, False),          # a new instance without a key: the old key goes, none is made
        (None, None, False, False),
    ],
)
def test_plan_keypair(existing: str | None, wanted: str | None, delete: bool, create: bool) -> None:
    assert plan_keypair(existing, wanted) == (delete, create)
