"""The hand-over: least privilege by construction, and the joiner's checks before it uses anything."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from provision.cluster import handover as ho
from provision.exceptions import JoinError
from provision.openstack.secrets import Secrets

KEY = "AQBdT0ZmAAAAABAAn6jkQ0vE3b3m0mQ0Yh3vzg=="
SEC = dataclasses.asdict(Secrets.generate())


def _handover(**changes: Any) -> dict[str, Any]:
    h = ho.Handover(
        node_name="cephdemo-2", controller="10.0.0.5", fsid="0b8e1b6e-3c1f-4a4e-9d1e-2f0b7c1a9e11",
        mon_ips=("10.0.0.5",), public_network="10.0.0.0/24", osd_entity=ho.join_entity("0123456789abcdef"),
        osd_key=KEY, volumes_key=KEY, openstack=ho.compute_secrets(SEC),
        mon_keyring=f"[mon.]\n\tkey = {KEY}\n\tcaps mon = \"allow *\"\n",
    )
    d = ho.to_dict(h)
    d.update(changes)
    return d


def test_a_hand_over_round_trips_and_shows_no_secret() -> None:
    h = ho.from_dict(_handover())
    assert h.runs_monitor and h.mon_ips == ("10.0.0.5",) and h.osd_entity == "client.join-0123456789abcdef"
    assert KEY not in repr(h) and SEC["rabbit"] not in repr(h)


def test_a_compute_node_gets_only_the_secrets_it_needs() -> None:
    got = ho.compute_secrets(SEC)
    assert set(got) == {"rabbit", "nova_service", "placement_service", "neutron_service", "libvirt_secret_uuid"}
    for never in ("admin_password", "keystone_db", "nova_db", "erlang_cookie", "dashboard_key"):
        assert never in SEC and never not in got
    with pytest.raises(JoinError, match="must not hold: admin_password"):
        ho.from_dict(_handover(openstack={**got, "admin_password": SEC["admin_password"]}))
    with pytest.raises(JoinError, match="no rabbit"):
        ho.compute_secrets({k: v for k, v in SEC.items() if k != "rabbit"})


def test_the_per_token_osd_user_only_bootstraps_osds() -> None:
    assert ho.JOIN_OSD_CAPS == (("mon", "allow profile bootstrap-osd"),)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"version": 2}, "version 2"),
        ({"node_name": "Not A Name"}, "invalid hostname"),
        ({"controller": "cephdemo"}, "controller"),
        ({"fsid": "x"}, "fsid"),
        ({"mon_ips": []}, "no monitor"),
        ({"mon_ips": ["192.168.1.1"]}, "outside its public network"),
        ({"osd_entity": "client.admin"}, "other than this token's"),
        ({"osd_key": "secret"}, "osd_key"),
        ({"mon_keyring": "[client.admin]\n"}, "without the mon. entity"),
        ({"openstack": {}}, "lacks the OpenStack secrets"),
    ],
)
def test_a_bad_hand_over_is_refused_naming_the_field_not_its_value(changes: dict[str, Any], words: str) -> None:
    with pytest.raises(JoinError, match=words) as e:
        ho.from_dict(_handover(**changes))
    assert KEY not in str(e.value)


def test_a_missing_field_is_named() -> None:
    d = _handover()
    del d["volumes_key"]
    with pytest.raises(JoinError, match="volumes_key"):
        ho.from_dict(d)


def test_a_node_without_a_monitor_has_no_monitor_keyring() -> None:
    assert not ho.from_dict(_handover(mon_keyring=None)).runs_monitor


def test_node_names_and_monitor_count() -> None:
    assert ho.node_name("cephdemo", []) == "cephdemo-2"
    assert ho.node_name("cephdemo", ["cephdemo", "cephdemo-2", "cephdemo-4"]) == "cephdemo-3"
    assert [ho.wants_monitor(n, 3) for n in (1, 2, 3)] == [True, True, False]
