"""ceph.conf rendering and address rewriting: pure functions, plain asserts."""

from __future__ import annotations

import pytest

from provision.ceph import conf as cephconf
from provision.exceptions import ConfigError

FSID = "492d5c48-8218-40fb-8437-27096d9ff11f"


def render(**kw: object) -> str:
    args: dict = dict(fsid=FSID, ip="10.0.1.7", network="10.0.1.0/24")
    args.update(kw)
    return cephconf.render_ceph_conf(**args)


def test_render_has_the_cluster_identity_and_the_monitor_vector() -> None:
    text = render()
    assert cephconf.get_option(text, "fsid") == FSID
    assert cephconf.get_option(text, "mon_host") == "[v2:10.0.1.7:3300,v1:10.0.1.7:6789]"
    assert cephconf.get_option(text, "public_network") == "10.0.1.0/24"
    assert cephconf.get_option(text, "mon_initial_members") == "a"


@pytest.mark.parametrize(
    "key, value",
    [
        ("osd_pool_default_size", "1"),
        ("osd_pool_default_min_size", "1"),
        ("osd_crush_chooseleaf_type", "0"),
        ("mon_allow_pool_size_one", "true"),
        ("mon_warn_on_pool_no_redundancy", "false"),
        ("mon_data_avail_warn", "10"),
        ("auth_allow_insecure_global_id_reclaim", "false"),
        ("auth_cluster_required", "cephx"),
    ],
)
def test_render_single_host_settings(key: str, value: str) -> None:
    assert cephconf.get_option(render(), key) == value


@pytest.mark.parametrize(
    "kw, key, value",
    [
        ({}, "bluestore_block_size", str(10 * 1024**3)),
        ({"osd_size_gib": 3}, "bluestore_block_size", str(3 * 1024**3)),
        ({}, "osd_memory_target", str(1024 * 1024**2)),
        ({"osd_memory_target_mib": 2048}, "osd_memory_target", str(2048 * 1024**2)),
        ({}, "bluestore_block_create", "true"),
        ({}, "osd_objectstore", "bluestore"),
    ],
)
def test_render_osd_section_follows_settings(kw: dict, key: str, value: str) -> None:
    assert cephconf.get_option(render(**kw), key, section="osd") == value


def test_render_never_sets_bluestore_block_path() -> None:
    # "Too many levels of symbolic links" when set to $osd_data/block (ceph-notes.md)
    assert "bluestore_block_path =" not in render()


def test_every_health_setting_is_rendered_and_explained() -> None:
    text = render()
    for h in cephconf.SINGLE_HOST_HEALTH_SETTINGS:
        assert cephconf.get_option(text, h.option) == h.value
        assert h.check.isupper() and len(h.reason) > 40


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"ip": "10.0.2.7"}, "does not contain"),
        ({"ip": "fe80::1", "network": "fe80::/64"}, "not an IPv4"),
        ({"ip": "cephdemo"}, "not an IP address"),
        ({"network": "10.0.1.0/33"}, "not a network"),
        ({"osd_size_gib": 0}, "positive"),
    ],
)
def test_render_refuses_bad_input(kw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        render(**kw)


def test_mon_addrvec() -> None:
    assert cephconf.mon_addrvec("172.31.5.9") == "[v2:172.31.5.9:3300,v1:172.31.5.9:6789]"


@pytest.mark.parametrize(
    "text, key, section, expected",
    [
        ("[global]\nmon host = 1.2.3.4\n", "mon_host", "global", "1.2.3.4"),
        ("[global]\nmon-host=1.2.3.4\n", "mon_host", "global", "1.2.3.4"),
        ("[global]\n# mon_host = 9.9.9.9\n", "mon_host", "global", None),
        ("[osd]\nmon_host = 1.2.3.4\n", "mon_host", "global", None),
        ("[global]\n  fsid = abc  \n", "fsid", "global", "abc"),
        ("", "fsid", "global", None),
    ],
)
def test_get_option(text: str, key: str, section: str, expected: str | None) -> None:
    assert cephconf.get_option(text, key, section) == expected


@pytest.mark.parametrize(
    "before, after",
    [
        # rewritten in place, comments and other sections kept
        (
            "# hi\n[global]\nfsid = F\nmon_host = [v2:10.0.1.7:3300,v1:10.0.1.7:6789]\npublic_network = 10.0.1.0/24\n\n[osd]\nx = 1\n",
            "# hi\n[global]\nfsid = F\nmon_host = [v2:10.0.9.5:3300,v1:10.0.9.5:6789]\npublic_network = 10.0.9.0/24\n\n[osd]\nx = 1\n",
        ),
        # old spelling, v1-only value (the 2013 recipe)
        (
            "[global]\nmon host = 10.0.1.7:6789\n",
            "[global]\nmon_host = [v2:10.0.9.5:3300,v1:10.0.9.5:6789]\npublic_network = 10.0.9.0/24\n",
        ),
        # public_addr follows the address too
        (
            "[global]\nmon_host = x\npublic_network = 10.0.1.0/24\npublic_addr = 10.0.1.7\n",
            "[global]\nmon_host = [v2:10.0.9.5:3300,v1:10.0.9.5:6789]\npublic_network = 10.0.9.0/24\npublic_addr = 10.0.9.5\n",
        ),
        # duplicates collapse to one line
        (
            "[global]\nmon_host = a\nmon_host = b\npublic_network = 10.0.9.0/24\n",
            "[global]\nmon_host = [v2:10.0.9.5:3300,v1:10.0.9.5:6789]\npublic_network = 10.0.9.0/24\n",
        ),
        # no [global] at all: one is added
        (
            "[osd]\nx = 1\n",
            "[osd]\nx = 1\n\n[global]\nmon_host = [v2:10.0.9.5:3300,v1:10.0.9.5:6789]\npublic_network = 10.0.9.0/24\n",
        ),
    ],
)
def test_readdress_conf(before: str, after: str) -> None:
    assert cephconf.readdress_conf(before, "10.0.9.5", "10.0.9.0/24") == after


def test_readdress_conf_is_idempotent_and_a_no_op_on_a_rendered_conf() -> None:
    text = render()
    assert cephconf.readdress_conf(text, "10.0.1.7", "10.0.1.0/24") == text
    moved = cephconf.readdress_conf(text, "10.0.9.5", "10.0.9.0/24")
    assert moved != text
    assert cephconf.readdress_conf(moved, "10.0.9.5", "10.0.9.0/24") == moved
    assert cephconf.get_option(moved, "bluestore_block_size", "osd") == cephconf.get_option(text, "bluestore_block_size", "osd")


IP_ADDR = """\
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
2: ens5    inet 172.31.18.44/20 metric 100 brd 172.31.31.255 scope global dynamic ens5\\       valid_lft 3416sec
19: eth0    inet 10.99.0.10/24 brd 10.99.0.255 scope global eth0\\       valid_lft forever preferred_lft forever
"""


@pytest.mark.parametrize(
    "ip, expected",
    [("172.31.18.44", "172.31.16.0/20"), ("10.99.0.10", "10.99.0.0/24"), ("127.0.0.1", "127.0.0.0/8"), ("10.99.0.11", None)],
)
def test_network_of(ip: str, expected: str | None) -> None:
    assert cephconf.network_of(IP_ADDR, ip) == expected


def test_a_cluster_nodes_conf_lists_every_monitor_and_keeps_the_single_host_settings() -> None:
    single = cephconf.render_ceph_conf(fsid="f", ip="10.0.0.5", network="10.0.0.0/24")
    member = cephconf.render_member_conf(fsid="f", ip="10.0.0.7", network="10.0.0.0/24", mon_ips=["10.0.0.5", "10.0.0.6"])
    assert cephconf.get_option(member, "mon_host") == "[v2:10.0.0.5:3300,v1:10.0.0.5:6789] [v2:10.0.0.6:3300,v1:10.0.0.6:6789]"
    assert cephconf.get_option(member, "mon_initial_members") is None
    assert cephconf.get_option(single, "mon_initial_members") == "a"
    drop = ("mon_host", "mon_initial_members")
    assert [x for x in member.splitlines() if not x.startswith(drop)] == [
        x for x in single.splitlines() if not x.startswith(drop)]


def test_a_cluster_nodes_conf_refuses_no_monitor_or_one_outside_the_network() -> None:
    with pytest.raises(ConfigError, match="at least one monitor"):
        cephconf.render_member_conf(fsid="f", ip="10.0.0.7", network="10.0.0.0/24", mon_ips=[])
    with pytest.raises(ConfigError, match="does not contain"):
        cephconf.render_member_conf(fsid="f", ip="10.0.0.7", network="10.0.0.0/24", mon_ips=["10.1.0.5"])
