"""The demo server planned as a table."""

from __future__ import annotations

import json
from typing import Any

import pytest

from provision.openstack.server import INSTANCE_KEY, plan_demo_server, render_demo_server_record, server_address


def _server(sid: str, status: str, instance: str | None = "i-new", created: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    meta = {INSTANCE_KEY: instance} if instance else {}
    return {"id": sid, "name": "cephdemo-server", "status": status, "created": created, "metadata": meta}


@pytest.mark.parametrize(
    ("servers", "keep", "delete", "start", "wait", "create"),
    [
        ([], None, (), False, False, True),
        ([_server("a", "ACTIVE")], "a", (), False, False, False),
        ([_server("a", "BUILD")], "a", (), False, True, False),
        ([_server("a", "SHUTOFF")], "a", (), True, False, False),
        ([_server("a", "ERROR")], None, ("a",), False, False, False),
        # The previous instance's (or the builder's) server: its volume connection is stale.
        ([_server("old", "ACTIVE", "i-old")], None, ("old",), False, False, False),
        ([_server("old", "ERROR", None)], None, ("old",), False, False, False),
        ([_server("old", "ACTIVE", "i-old"), _server("a", "BUILD")], "a", ("old",), False, True, False),
        # Never two: the later one goes.
        ([_server("b", "ACTIVE", created="2026-01-02T00:00:00Z"), _server("a", "ACTIVE")], "a", ("b",), False, False, False),
        ([{**_server("x", "ACTIVE"), "name": "other"}], None, (), False, False, True),
        ([_server("gone", "DELETED")], None, (), False, False, True),
    ],
)
def test_plan_demo_server(servers: list[dict[str, Any]], keep: str | None, delete: tuple[str, ...], start: bool, wait: bool, create: bool) -> None:
    plan = plan_demo_server(servers, "cephdemo-server", "i-new")
    assert (plan.keep, plan.delete, plan.start, plan.wait, plan.create) == (keep, delete, start, wait, create)


def test_the_record_names_the_servers_ipv4_address_and_key_pair() -> None:
    server = {"id": "s1", "key_name": "cephdemo-key", "addresses": {"cephdemo-net": [
        {"version": 6, "addr": "fd00::5"}, {"version": 4, "addr": "192.168.233.10"}]}}
    assert server_address(server) == "192.168.233.10"
    assert json.loads(render_demo_server_record(server)) == {"id": "s1", "address": "192.168.233.10", "key_name": "cephdemo-key"}
    assert server_address({"id": "s2", "addresses": {}}) is None
