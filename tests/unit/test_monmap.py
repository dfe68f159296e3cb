"""Monmap parsing and the re-addressing planner, as tables of (observed, desired, expected plan)."""

from __future__ import annotations

import json

import pytest

from provision.ceph import conf as cephconf
from provision.ceph import monmap
from provision.exceptions import ConfigError

FSID = "11111111-2222-3333-4444-555555555555"
WORK = "/var/lib/ceph-openstack-ami/ceph/monmap.work"
LAYOUT = monmap.Layout(work_file=WORK)

# Verbatim `monmaptool --print` output from Ceph 16.2.15 (Debian bookworm).
PRINT_V2V1 = f"""\
monmaptool: monmap file m1
epoch 2
fsid {FSID}
last_changed 2026-11-26T13:47:41.541179+0000
created 2026-11-26T13:47:41.541179+0000
min_mon_release 16 (pacific)
election_strategy: 1
0: [v2:10.99.0.10:3300/0,v1:10.99.0.10:6789/0] mon.a
"""
PRINT_V1_ONLY = f"""\
monmaptool: monmap file m2
epoch 0
fsid {FSID}
last_changed 2026-11-26T13:47:41.573202+0000
created 2026-11-26T13:47:41.573202+0000
min_mon_release 0 (unknown)
election_strategy: 1
0: v1:10.99.0.10:6789/0 mon.a
"""
PRINT_TWO = PRINT_V1_ONLY.replace("0: v1:10.99.0.10:6789/0 mon.a", "0: v1:10.0.0.5:6789/0 mon.a\n1: v2:10.0.0.6:3300/0 mon.b")
PRINT_EMPTY = "\n".join(line for line in PRINT_V2V1.splitlines() if "mon.a" not in line)

# `ceph mon dump -f json`, trimmed to what matters (compact, as ceph prints it).
DUMP_JSON = json.dumps(
    {
        "epoch": 3,
        "fsid": FSID,
        "mons": [
            {
                "rank": 0,
                "name": "a",
                "public_addrs": {
                    "addrvec": [
                        {"type": "v2", "addr": "10.99.0.11:3300", "nonce": 0},
                        {"type": "v1", "addr": "10.99.0.11:6789", "nonce": 0},
                    ]
                },
                "addr": "10.99.0.11:6789/0",
                "public_addr": "10.99.0.11:6789/0",
            }
        ],
    },
    separators=(",", ":"),
)


def conf_for(ip: str, network: str = "10.99.0.0/24") -> str:
    return cephconf.render_ceph_conf(fsid=FSID, ip=ip, network=network)


V2V1_10 = (monmap.Addr("v2", "10.99.0.10", 3300), monmap.Addr("v1", "10.99.0.10", 6789))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[v2:10.99.0.10:3300/0,v1:10.99.0.10:6789/0]", V2V1_10),
        ("[v2:10.99.0.10:3300,v1:10.99.0.10:6789]", V2V1_10),
        ("v1:10.0.0.5:6789/0", (monmap.Addr("v1", "10.0.0.5", 6789),)),
        ("10.0.0.5:6789/0", (monmap.Addr("v1", "10.0.0.5", 6789),)),
        ("[10.0.0.5:6789/0]", (monmap.Addr("v1", "10.0.0.5", 6789),)),
        ("v2:10.0.0.6:3300/0", (monmap.Addr("v2", "10.0.0.6", 3300),)),
    ],
)
def test_parse_addrvec(text: str, expected: tuple) -> None:
    assert monmap.parse_addrvec(text) == expected


@pytest.mark.parametrize("text", ["", "[]", "mon.a", "v3:1.2.3.4:1", "[v2:1.2.3.4]"])
def test_parse_addrvec_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        monmap.parse_addrvec(text)


@pytest.mark.parametrize(
    "text, epoch, mons",
    [
        (PRINT_V2V1, 2, {"a": "[v2:10.99.0.10:3300,v1:10.99.0.10:6789]"}),
        (PRINT_V1_ONLY, 0, {"a": "[v1:10.99.0.10:6789]"}),
        (PRINT_TWO, 0, {"a": "[v1:10.0.0.5:6789]", "b": "[v2:10.0.0.6:3300]"}),
        (PRINT_EMPTY, 2, {}),
    ],
)
def test_parse_monmaptool_print(text: str, epoch: int, mons: dict) -> None:
    m = monmap.parse_monmaptool_print(text)
    assert (m.fsid, m.epoch) == (FSID, epoch)
    assert {x.name: x.addrvec for x in m.mons} == mons


def test_parse_monmaptool_print_refuses_other_text() -> None:
    with pytest.raises(ValueError, match="not a monmap"):
        monmap.parse_monmaptool_print("monmaptool: couldn't open m9: (2) No such file or directory\n")


def test_parse_mon_dump_json() -> None:
    m = monmap.parse_mon_dump_json(DUMP_JSON)
    assert (m.fsid, m.epoch) == (FSID, 3)
    assert m.get("a") is not None and m.get("a").addrvec == "[v2:10.99.0.11:3300,v1:10.99.0.11:6789]"  # type: ignore[union-attr]


def test_parse_mon_dump_json_without_addrvec_uses_addr() -> None:
    m = monmap.parse_mon_dump_json(json.dumps({"epoch": 1, "fsid": FSID, "mons": [{"name": "a", "addr": "10.0.0.5:6789/0"}]}))
    assert m.mons[0].addrs == (monmap.Addr("v1", "10.0.0.5", 6789),)


@pytest.mark.parametrize("text", ["", "{}", '{"fsid": "x"}', "HEALTH_OK"])
def test_parse_mon_dump_json_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        monmap.parse_mon_dump_json(text)


EXTRACT = ("ceph-mon", "--cluster", "ceph", "-i", "a", "--setuser", "ceph", "--setgroup", "ceph", "--extract-monmap", WORK)
RM = ("monmaptool", "--rm", "a", WORK)
INJECT = ("ceph-mon", "--cluster", "ceph", "-i", "a", "--setuser", "ceph", "--setgroup", "ceph", "--inject-monmap", WORK)


def addv(ip: str) -> tuple[str, ...]:
    return ("monmaptool", "--addv", "a", f"[v2:{ip}:3300,v1:{ip}:6789]", WORK)


# (case, observed map text, ceph.conf points at, instance IP now, expected argv list, conf rewritten?, reason contains)
PLANS = [
    ("unchanged", PRINT_V2V1, "10.99.0.10", "10.99.0.10", [], False, "unchanged"),
    ("new IP", PRINT_V2V1, "10.99.0.10", "10.99.0.11", [EXTRACT, RM, addv("10.99.0.11"), INJECT], True, "moves from"),
    ("v1-only, same IP", PRINT_V1_ONLY, "10.99.0.10", "10.99.0.10", [EXTRACT, RM, addv("10.99.0.10"), INJECT], False, "incomplete vector"),
    ("v1-only, new IP", PRINT_V1_ONLY, "10.99.0.10", "10.99.0.12", [EXTRACT, RM, addv("10.99.0.12"), INJECT], True, "moves from"),
    ("map done, conf not (crash after inject)", PRINT_V2V1, "10.99.0.9", "10.99.0.10", [], True, "ceph.conf still"),
    ("mon missing from map", PRINT_EMPTY, "10.99.0.10", "10.99.0.10", [EXTRACT, addv("10.99.0.10"), INJECT], False, "absent"),
]


@pytest.mark.parametrize("case, observed, conf_ip, ip, argvs, conf_changes, reason", PLANS, ids=[p[0] for p in PLANS])
def test_plan_readdress(case: str, observed: str, conf_ip: str, ip: str, argvs: list, conf_changes: bool, reason: str) -> None:
    conf = conf_for(conf_ip)
    plan = monmap.plan_readdress(monmap.parse_monmaptool_print(observed), conf, ip, "10.99.0.0/24", LAYOUT)
    assert [c.argv for c in plan.commands] == argvs
    assert (plan.conf is not None) == conf_changes
    assert plan.empty == (not argvs and not conf_changes)
    assert reason in plan.reason
    if plan.conf is not None:
        assert cephconf.get_option(plan.conf, "mon_host") == f"[v2:{ip}:3300,v1:{ip}:6789]"
    assert all(c.why for c in plan.commands)
    assert plan.describe()


def test_plan_is_empty_after_applying_it() -> None:
    """Executing a plan and planning again (fresh extract) gives an empty plan: the job is idempotent."""
    before = monmap.parse_monmaptool_print(PRINT_V2V1)
    plan = monmap.plan_readdress(before, conf_for("10.99.0.10"), "10.99.0.11", "10.99.0.0/24", LAYOUT)
    after = monmap.MonMap(before.fsid, before.epoch, (monmap.Mon("a", monmap.wanted_addrs("10.99.0.11")),))
    assert plan.conf is not None
    again = monmap.plan_readdress(after, plan.conf, "10.99.0.11", "10.99.0.0/24", LAYOUT)
    assert again.empty and again.commands == () and again.conf is None


def test_plan_from_mon_dump_json() -> None:
    observed = monmap.parse_mon_dump_json(DUMP_JSON)
    assert monmap.plan_readdress(observed, conf_for("10.99.0.11"), "10.99.0.11", "10.99.0.0/24", LAYOUT).empty


def test_plan_new_subnet_rewrites_public_network() -> None:
    plan = monmap.plan_readdress(
        monmap.parse_monmaptool_print(PRINT_V2V1), conf_for("10.99.0.10"), "172.31.18.44", "172.31.16.0/20", LAYOUT
    )
    assert plan.conf is not None and cephconf.get_option(plan.conf, "public_network") == "172.31.16.0/20"


def test_plan_honours_layout() -> None:
    layout = monmap.Layout(mon_id="b", cluster="lab", work_file="/w/m", user="ceph2", group="ceph2")
    text = PRINT_V2V1.replace("mon.a", "mon.b")
    plan = monmap.plan_readdress(monmap.parse_monmaptool_print(text), conf_for("10.99.0.10"), "10.99.0.11", "10.99.0.0/24", layout)
    assert plan.commands[0].argv == ("ceph-mon", "--cluster", "lab", "-i", "b", "--setuser", "ceph2", "--setgroup", "ceph2", "--extract-monmap", "/w/m")
    assert plan.commands[1].argv == ("monmaptool", "--rm", "b", "/w/m")


@pytest.mark.parametrize(
    "observed, conf, ip, message",
    [
        (PRINT_TWO, conf_for("10.99.0.10"), "10.99.0.10", "besides a"),
        (PRINT_V2V1, conf_for("10.99.0.10").replace(FSID, "99999999-2222-3333-4444-555555555555"), "10.99.0.10", "fsid"),
        (PRINT_V2V1, conf_for("10.99.0.10"), "10.99.0.300", "not an IP"),
    ],
)
def test_plan_refuses(observed: str, conf: str, ip: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        monmap.plan_readdress(monmap.parse_monmaptool_print(observed), conf, ip, "10.99.0.0/24", LAYOUT)
