"""Cinder: the RBD backend in cinder.conf, the bootable volume planned as a table."""

from __future__ import annotations

from typing import Any

import pytest

from provision.openstack.addresses import Addresses
from provision.openstack.identity import render_keystone_conf
from provision.openstack.ini import parse_ini
from provision.openstack.volume import plan_boot_volume, render_cinder_conf

from .samples import ADDRS, SEC, S


def test_cinder_conf_has_one_rbd_backend() -> None:
    conf = parse_ini(render_cinder_conf(S, SEC, ADDRS))
    d = conf["DEFAULT"]
    assert d["enabled_backends"] == "ceph" and d["host"] == "cephdemo" and d["my_ip"] == "10.77.0.5"
    assert d["periodic_fuzzy_delay"] == "0"
    assert d["transport_url"] == "rabbit://openstack:RbPw@127.0.0.1:5672/"
    assert d["glance_api_servers"] == "http://10.77.0.5:9292"
    b = conf["ceph"]
    assert b["volume_driver"] == "cinder.volume.drivers.rbd.RBDDriver"
    assert (b["rbd_pool"], b["rbd_user"], b["volume_backend_name"]) == ("volumes", "volumes", "ceph")
    assert b["rbd_secret_uuid"] == SEC.libvirt_secret_uuid
    assert b["rbd_flatten_volume_from_snapshot"] == "false"


def test_configs_change_only_with_their_inputs() -> None:
    assert render_cinder_conf(S, SEC, ADDRS) == render_cinder_conf(S, SEC, Addresses(ADDRS.private_ip, ADDRS.public_host))
    moved = Addresses("10.77.0.9", ADDRS.public_host)
    assert render_cinder_conf(S, SEC, moved) != render_cinder_conf(S, SEC, ADDRS)
    assert render_keystone_conf(S, SEC) == render_keystone_conf(S, SEC)


def vol(vid: str, status: str, created: str = "2026-01-01T00:00:00", name: str = "cephdemo-boot", attached: bool = False) -> dict[str, Any]:
    return {"id": vid, "name": name, "status": status, "created_at": created, "attachments": [{"server_id": "s"}] if attached else []}


@pytest.mark.parametrize(
    ("volumes", "keep", "delete", "wait", "create"),
    [
        ([], None, (), (), True),
        ([vol("x", "available", name="other")], None, (), (), True),
        ([vol("a", "available")], "a", (), (), False),
        ([vol("a", "in-use", attached=True)], "a", (), (), False),
        ([vol("a", "error")], None, ("a",), (), False),
        ([vol("a", "creating")], None, (), ("a",), False),
        ([vol("a", "downloading"), vol("b", "error")], None, ("b",), ("a",), False),
        ([vol("a", "available", "2026-01-01"), vol("b", "error", "2026-01-02")], "a", ("b",), (), False),
        ([vol("b", "available", "2026-01-02"), vol("a", "available", "2026-01-01")], "a", ("b",), (), False),
        ([vol("a", "available", "2026-01-01"), vol("b", "in-use", "2026-01-02", attached=True)], "a", (), (), False),
        ([vol("a", "available"), vol("b", "creating", "2026-01-02")], "a", (), ("b",), False),
        ([vol("a", "error_deleting")], None, (), (), True),
    ],
)
def test_plan_boot_volume(volumes: list[dict[str, Any]], keep: str | None, delete: tuple[str, ...], wait: tuple[str, ...], create: bool) -> None:
    plan = plan_boot_volume(volumes, "cephdemo-boot")
    assert (plan.keep, plan.delete, plan.wait, plan.create) == (keep, delete, wait, create)
    assert not (plan.create and (plan.keep or plan.wait or plan.delete))  # never a second one while one exists
