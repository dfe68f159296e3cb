"""Horizon: per-instance overrides, the console line."""

from __future__ import annotations

from typing import Any

from provision.openstack.dashboard import console_line, render_dashboard_overrides

from .samples import ADDRS, SEC, S


def test_console_line_is_the_documented_one() -> None:
    assert console_line(ADDRS, "pw") == "ceph-openstack-ami: admin password for http://ec2-203-0-113-7.compute-1.amazonaws.com/: pw"


def test_dashboard_overrides_are_per_instance() -> None:
    text = render_dashboard_overrides(S, SEC, ADDRS)
    ns: dict[str, Any] = {}
    exec(compile(text, "overrides", "exec"), ns)  # it is Python: it must at least run
    assert ns["WEBROOT"] == "/" and ns["SECRET_KEY"] == "DjangoKey"
    assert {ADDRS.public_host, ADDRS.private_ip} <= set(ns["ALLOWED_HOSTS"]) and "*" not in ns["ALLOWED_HOSTS"]
    assert ns["OPENSTACK_KEYSTONE_URL"] == "http://127.0.0.1:5000/v3"
