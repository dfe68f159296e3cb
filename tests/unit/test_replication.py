"""The pools' replication plan, as a table: one host keeps today's settings, three hosts get three copies on three hosts."""

from __future__ import annotations

import pytest

from provision.ceph import replication as rp
from provision.settings import Settings

S = Settings()
ONE_COPY = [rp.Pool("images", 1, 1, 0), rp.Pool("volumes", 1, 1, 0), rp.Pool(".mgr", 1, 1, 0)]
TREE = {
    "nodes": [
        {"id": -1, "name": "default", "type": "root", "children": [-2, -3, -4]},
        {"id": -2, "name": "cephdemo", "type": "host", "children": [0]},
        {"id": -3, "name": "node2", "type": "host", "children": [1]},
        {"id": -4, "name": "spare", "type": "host", "children": []},
        {"id": 0, "name": "osd.0", "type": "osd"},
        {"id": 1, "name": "osd.1", "type": "osd"},
    ]
}


def test_hosts_with_osds_are_counted_from_the_osd_tree() -> None:
    assert rp.osd_hosts(TREE) == ["cephdemo", "node2"]


def test_the_parsers_read_cephs_json() -> None:
    detail = [{"pool_name": "volumes", "size": 3, "min_size": 2, "crush_rule": 1, "pg_num": 32}]
    assert rp.pools(detail) == [rp.Pool("volumes", 3, 2, 1)]
    assert rp.rule_ids([{"rule_id": 0, "rule_name": "replicated_rule"}, {"rule_id": 1, "rule_name": "replicated_host"}]) \
        == {"replicated_rule": 0, "replicated_host": 1}


@pytest.mark.parametrize("hosts", [["cephdemo"], ["cephdemo", "node2"]])
def test_fewer_than_three_hosts_keep_todays_settings(hosts: list[str]) -> None:
    p = rp.plan(S, hosts, ONE_COPY, {"replicated_rule": 0})
    assert p.commands == ()
    assert "keep their settings" in p.reason


def test_three_hosts_make_the_host_rule_then_move_each_pool() -> None:
    p = rp.plan(S, ["a", "b", "c"], ONE_COPY, {"replicated_rule": 0})
    assert p.commands == (
        ("osd", "crush", "rule", "create-replicated", "replicated_host", "default", "host"),
        ("osd", "pool", "set", ".mgr", "crush_rule", "replicated_host"),
        ("osd", "pool", "set", ".mgr", "size", "3"),
        ("osd", "pool", "set", ".mgr", "min_size", "2"),
        ("osd", "pool", "set", "images", "crush_rule", "replicated_host"),
        ("osd", "pool", "set", "images", "size", "3"),
        ("osd", "pool", "set", "images", "min_size", "2"),
        ("osd", "pool", "set", "volumes", "crush_rule", "replicated_host"),
        ("osd", "pool", "set", "volumes", "size", "3"),
        ("osd", "pool", "set", "volumes", "min_size", "2"),
    )
    assert p.reason == "3 OSD hosts: .mgr, images, volumes to 3 copies (min_size 2) on distinct hosts"


def test_a_plan_carried_out_plans_nothing_and_a_half_done_one_only_the_rest() -> None:
    rules = {"replicated_rule": 0, "replicated_host": 1}
    done = [rp.Pool(n, 3, 2, 1) for n in ("images", "volumes")]
    assert rp.plan(S, ["a", "b", "c", "d"], done, rules).commands == ()
    half = [rp.Pool("images", 3, 2, 1), rp.Pool("volumes", 3, 1, 1)]
    p = rp.plan(S, ["a", "b", "c"], half, rules)
    assert p.commands == (("osd", "pool", "set", "volumes", "min_size", "2"),)
    assert "volumes to 3 copies" in p.reason


def test_the_thresholds_come_from_settings() -> None:
    s = S.replace(cluster={"replicated_hosts": 2, "replicated_size": 2, "replicated_min_size": 1})
    p = rp.plan(s, ["a", "b"], [rp.Pool("volumes", 1, 1, 0)], {"replicated_host": 4})
    assert p.commands == (("osd", "pool", "set", "volumes", "crush_rule", "replicated_host"),
                          ("osd", "pool", "set", "volumes", "size", "2"))
