"""Keystone: the catalog planned as a table, keystone.conf, openrc."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from provision.openstack.addresses import Addresses
from provision.openstack.identity import CatalogAction, desired_endpoints, keystone_digest, parse_openrc, plan_catalog, render_keystone_conf, render_openrc
from provision.openstack.ini import parse_ini

from .samples import ADDRS, SEC, S


@pytest.mark.parametrize(
    ("service", "interface", "url"),
    [
        # Public: the TLS proxies (issue 14); internal and admin: the services themselves.
        ("identity", "public", "https://ec2-203-0-113-7.compute-1.amazonaws.com:13000/v3"),
        ("identity", "internal", "http://10.77.0.5:5000/v3"),
        ("identity", "admin", "http://10.77.0.5:5000/v3"),
        ("image", "public", "https://ec2-203-0-113-7.compute-1.amazonaws.com:13292"),
        ("image", "internal", "http://10.77.0.5:9292"),
        ("volumev3", "public", "https://ec2-203-0-113-7.compute-1.amazonaws.com:13776/v3/%(project_id)s"),
        ("volumev3", "admin", "http://10.77.0.5:8776/v3/%(project_id)s"),
        ("compute", "public", "https://ec2-203-0-113-7.compute-1.amazonaws.com:13774/v2.1"),
        ("compute", "internal", "http://10.77.0.5:8774/v2.1"),
        ("placement", "internal", "http://10.77.0.5:8778"),
        ("placement", "public", "https://ec2-203-0-113-7.compute-1.amazonaws.com:13778"),
        ("network", "public", "https://ec2-203-0-113-7.compute-1.amazonaws.com:13696"),
    ],
)
def test_desired_endpoints(service: str, interface: str, url: str) -> None:
    desired = desired_endpoints(S, ADDRS)
    assert len(desired) == 18  # six services, three interfaces each
    assert desired[(service, interface)] == url


def _catalog(urls: dict[tuple[str, str], str], region: str = "RegionOne") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    services = [{"id": f"s-{t}", "type": t} for t in sorted({t for t, _ in urls})]
    endpoints = [{"id": f"e-{t}-{i}", "service_id": f"s-{t}", "interface": i, "url": u, "region_id": region} for (t, i), u in urls.items()]
    return services, endpoints


def test_plan_catalog_empty_creates_services_then_endpoints() -> None:
    plan = plan_catalog(desired_endpoints(S, ADDRS), [], [], "RegionOne")
    assert [a.kind for a in plan] == ["service"] * 6 + ["create"] * 18
    assert {a.service_type for a in plan if a.kind == "service"} == {"identity", "image", "volumev3", "compute", "placement", "network"}


def test_plan_catalog_current_is_empty() -> None:
    desired = desired_endpoints(S, ADDRS)
    assert plan_catalog(desired, *_catalog(desired), "RegionOne") == []


def test_plan_catalog_follows_a_new_address_and_name() -> None:
    old = desired_endpoints(S, Addresses("10.77.0.4", "ec2-old.compute-1.amazonaws.com"))
    new = desired_endpoints(S, ADDRS)
    plan = plan_catalog(new, *_catalog(old), "RegionOne")
    assert len(plan) == 18 and all(a.kind == "update" for a in plan)
    assert CatalogAction("update", "identity", "public", new[("identity", "public")], "e-identity-public") in plan


def test_plan_catalog_fixes_region_and_removes_duplicates() -> None:
    desired = desired_endpoints(S, ADDRS)
    services, endpoints = _catalog(desired, region="elsewhere")
    endpoints.append({"id": "dup", "service_id": "s-image", "interface": "public", "url": "http://stale:9292", "region_id": "RegionOne"})
    plan = plan_catalog(desired, services, endpoints, "RegionOne")
    assert sum(a.kind == "update" for a in plan) == 18
    assert [a.endpoint_id for a in plan if a.kind == "delete"] == ["dup"]


def test_keystone_conf_uses_fernet_and_mariadb() -> None:
    conf = parse_ini(render_keystone_conf(S, SEC))
    assert conf["token"]["provider"] == "fernet"
    assert conf["fernet_tokens"]["key_repository"] == "/etc/keystone/fernet-keys/"
    assert conf["credential"]["key_repository"] == "/etc/keystone/credential-keys/"
    assert "KsDb" in conf["database"]["connection"]


def test_openrc_roundtrips_and_quotes() -> None:
    env = parse_openrc(render_openrc(S, SEC, ADDRS))
    assert env["OS_PASSWORD"] == "Adm1nPassw0rd"
    assert env["OS_AUTH_URL"] == "https://ec2-203-0-113-7.compute-1.amazonaws.com:13000/v3"  # issue 14: TLS
    assert (env["OS_USERNAME"], env["OS_PROJECT_NAME"], env["OS_REGION_NAME"]) == ("admin", "admin", "RegionOne")
    odd = dataclasses.replace(SEC, admin_password="a b'c")
    assert parse_openrc(render_openrc(S, odd, ADDRS))["OS_PASSWORD"] == "a b'c"


def test_the_keystone_record_changes_with_an_address_or_a_secret_and_only_then() -> None:
    digest = keystone_digest(S, SEC, ADDRS)
    assert digest == keystone_digest(S, SEC, ADDRS)
    assert SEC.admin_password not in digest and SEC.nova_service not in digest
    others = [
        keystone_digest(S, SEC, Addresses("10.77.0.6", ADDRS.public_host)),
        keystone_digest(S, SEC, Addresses(ADDRS.private_ip, "ec2-203-0-113-8.compute-1.amazonaws.com")),
        keystone_digest(S, dataclasses.replace(SEC, admin_password="other"), ADDRS),
        keystone_digest(S, dataclasses.replace(SEC, placement_service="other"), ADDRS),
    ]
    assert digest not in others and len(set(others)) == len(others)
