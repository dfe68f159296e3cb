"""The ini format and the sections every service shares."""

from __future__ import annotations

import pytest

from provision.exceptions import ConfigError
from provision.openstack.compute import render_nova_conf
from provision.openstack.ini import parse_ini, render_ini
from provision.openstack.network import render_neutron_conf
from provision.openstack.volume import render_cinder_conf

from .samples import ADDRS, SEC, S


def test_ini_refuses_multiline_values() -> None:
    with pytest.raises(ConfigError):
        render_ini("# x", [("DEFAULT", [("key", "a\nb")])])


def test_service_tokens_need_the_service_role() -> None:
    for text in (render_cinder_conf(S, SEC, ADDRS), render_nova_conf(S, SEC, ADDRS), render_neutron_conf(S, SEC, ADDRS)):
        auth = parse_ini(text)["keystone_authtoken"]
        assert auth["service_token_roles"] == "service" and auth["service_token_roles_required"] == "true"
