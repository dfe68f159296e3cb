"""Where the instance is, from its metadata."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from provision.openstack.addresses import Addresses


@pytest.mark.parametrize(
    ("public", "expected"),
    [("ec2-1-2-3-4.compute-1.amazonaws.com", "ec2-1-2-3-4.compute-1.amazonaws.com"), (None, "10.0.0.9"), ("", "10.0.0.9")],
)
def test_addresses_from_metadata(public: str | None, expected: str) -> None:
    info = SimpleNamespace(local_ipv4="10.0.0.9", public_hostname=public)
    assert Addresses.from_info(info) == Addresses("10.0.0.9", expected)
