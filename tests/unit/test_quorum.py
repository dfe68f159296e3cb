"""A member's monitor through the quorum, as a table: add, replace after a relaunch, start as is, refuse without a majority."""

from __future__ import annotations

import pytest

from provision.ceph.monmap import Mon, MonMap, wanted_addrs
from provision.ceph.quorum import plan_member_monitor
from provision.exceptions import CephNotHealthy


def _map(*mons: tuple[str, str]) -> MonMap:
    return MonMap(fsid="f", epoch=3, mons=tuple(Mon(n, wanted_addrs(ip)) for n, ip in mons))


def _argv(plan: object) -> list[str]:
    return [" ".join(c.argv) for c in plan.commands]  # type: ignore[attr-defined]


def test_a_new_member_gets_a_store_from_the_quorums_map() -> None:
    p = plan_member_monitor("cephdemo-2", "10.0.0.6", _map(("a", "10.0.0.5")), ["a"], has_store=False, stamp="i-1")
    assert _argv(p) == [
        "ceph mon getmap -o /run/ceph-openstack-ami/member-monmap",
        "ceph-mon --cluster ceph --mkfs -i cephdemo-2 --monmap /run/ceph-openstack-ami/member-monmap "
        "--keyring /run/ceph-openstack-ami/mon.keyring --setuser ceph --setgroup ceph",
    ]
    assert p.start and p.reason == "adding mon.cephdemo-2 at 10.0.0.6 through the quorum (a)"


def test_a_member_at_its_address_with_its_store_only_starts() -> None:
    m = _map(("a", "10.0.0.5"), ("cephdemo-2", "10.0.0.6"))
    p = plan_member_monitor("cephdemo-2", "10.0.0.6", m, ["a", "cephdemo-2"], has_store=True, stamp="i-1")
    assert p.commands == () and p.start and "starting it" in p.reason


def test_a_relaunched_member_is_removed_through_the_quorum_and_made_anew() -> None:
    m = _map(("a", "10.0.0.5"), ("cephdemo-2", "10.0.0.6"), ("cephdemo-3", "10.0.0.7"))
    p = plan_member_monitor("cephdemo-2", "10.0.0.9", m, ["a", "cephdemo-3"], has_store=True, stamp="i-old")
    assert _argv(p)[:2] == [
        "ceph mon rm cephdemo-2",
        "mv /var/lib/ceph/mon/ceph-cephdemo-2 /var/lib/ceph/mon/ceph-cephdemo-2.old-i-old",
    ]
    assert _argv(p)[2].startswith("ceph mon getmap") and "--mkfs -i cephdemo-2" in _argv(p)[3]
    assert "replacing mon.cephdemo-2 at 10.0.0.9" in p.reason
    assert not any("inject" in a for a in _argv(p))


@pytest.mark.parametrize("quorum", [["a"], []])
def test_without_a_majority_nothing_is_tried(quorum: list[str]) -> None:
    m = _map(("a", "10.0.0.5"), ("cephdemo-2", "10.0.0.6"))
    with pytest.raises(CephNotHealthy, match=r"of the map's 2 monitors are in quorum, not a majority"):
        plan_member_monitor("cephdemo-2", "10.0.0.9", m, quorum, has_store=True, stamp="i-1")
