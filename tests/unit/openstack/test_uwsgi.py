"""The uWSGI-served APIs: small inis, counts from the settings, heartbeats where RPC is used."""

from __future__ import annotations

import pytest

from provision.openstack.ini import parse_ini
from provision.openstack.uwsgi import RPC_HEARTBEAT_ENV, render_default_file, render_uwsgi_ini, uwsgi_apps, uwsgi_ini_path
from provision.settings import apply_overrides

from .samples import S


@pytest.mark.parametrize("package", ["keystone", "cinder-api"])
def test_uwsgi_ini_is_small_and_has_no_apparmor(package: str) -> None:
    s = apply_overrides(S, {"openstack": {"keystone_processes": 2, "cinder_api_threads": 3}})
    app = uwsgi_apps(s)[package]
    ini = parse_ini(render_uwsgi_ini(app))["uwsgi"]
    assert ini["plugins"] == "python3"
    assert "apparmor" not in render_uwsgi_ini(app)
    assert ini["http-socket"] == f"0.0.0.0:{app.port}"
    assert ini["add-header"] == "Connection: close"
    assert (ini["processes"], ini["threads"]) == (str(app.processes), str(app.threads))
    assert f"--ini {uwsgi_ini_path(package)}" in render_default_file(package)


def test_uwsgi_counts_come_from_settings() -> None:
    s = apply_overrides(S, {"openstack": {"keystone_processes": 2, "cinder_api_threads": 3}})
    assert uwsgi_apps(s)["keystone"].processes == 2
    assert uwsgi_apps(s)["cinder-api"].threads == 3


def test_only_the_uwsgi_apps_that_use_rpc_send_heartbeats_from_a_native_thread() -> None:
    apps = uwsgi_apps(S)
    with_env = {p for p, app in apps.items() if parse_ini(render_uwsgi_ini(app))["uwsgi"].get("env") == RPC_HEARTBEAT_ENV}
    assert with_env == {"nova-api", "neutron-api", "cinder-api"}
