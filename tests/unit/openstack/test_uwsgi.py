"""The uWSGI-served APIs: small inis, counts from the settings, no AMQP heartbeat for the eventlet-patched ones, oslo.log's preload for the others."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from provision.exceptions import ConfigError
from provision.openstack.ini import parse_ini
from provision.openstack.profile import profile
from provision.openstack.uwsgi import (
    RPC_HEARTBEAT_ENV,
    UWSGI_PRELOAD,
    render_default_file,
    render_uwsgi_ini,
    render_uwsgi_preload,
    uwsgi_apps,
    uwsgi_files,
    uwsgi_ini_path,
)
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


def test_only_the_eventlet_patched_uwsgi_apps_ask_for_no_amqp_heartbeat() -> None:
    apps = uwsgi_apps(S)
    with_env = {p for p, app in apps.items() if parse_ini(render_uwsgi_ini(app))["uwsgi"].get("env") == RPC_HEARTBEAT_ENV}
    assert with_env == {"nova-api", "neutron-api"}
    assert RPC_HEARTBEAT_ENV == "OS_OSLO_MESSAGING_RABBIT__HEARTBEAT_TIMEOUT_THRESHOLD=0"
    assert "HEARTBEAT_IN_PTHREAD" not in "".join(render_uwsgi_ini(app) for app in apps.values())


def test_eventlet_patched_uwsgi_apps_run_one_thread_per_process() -> None:
    apps = uwsgi_apps(S)
    assert {p for p, app in apps.items() if app.eventlet_patched} == {"nova-api", "neutron-api"}
    for package in ("nova-api", "neutron-api"):
        assert parse_ini(render_uwsgi_ini(apps[package]))["uwsgi"]["threads"] == "1"
    with pytest.raises(ConfigError, match="1 thread per uWSGI process"):
        uwsgi_apps(apply_overrides(S, {"openstack": {"nova_api_threads": 4}}))


def test_the_apps_that_are_not_patched_load_the_oslo_log_preload_first() -> None:
    apps = uwsgi_apps(S)
    preloaded = {p for p, app in apps.items() if parse_ini(render_uwsgi_ini(app))["uwsgi"].get("import") == UWSGI_PRELOAD}
    assert preloaded == {"keystone", "cinder-api", "placement-api"}
    files = {f.path: f for f in uwsgi_files(S, profile("debian-12"))}
    assert files[UWSGI_PRELOAD].content == render_uwsgi_preload()
    assert set(files[UWSGI_PRELOAD].units) == {"keystone.service", "cinder-api.service", "placement-api.service"}


@pytest.mark.parametrize("patched", [False, True])
def test_preload_keeps_oslo_logs_eventlet_workaround_for_patched_processes_only(patched: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    fake_log = SimpleNamespace(_fix_eventlet_logging=lambda: calls.append("green logging lock"))
    fake_patcher = SimpleNamespace(is_monkey_patched=lambda module: patched and module == "thread")
    monkeypatch.setitem(sys.modules, "oslo_log", SimpleNamespace(log=fake_log))
    monkeypatch.setitem(sys.modules, "oslo_log.log", fake_log)
    monkeypatch.setitem(sys.modules, "eventlet.patcher", fake_patcher)
    exec(compile(render_uwsgi_preload(), "uwsgi_preload.py", "exec"), {"__name__": "uwsgi_preload"})
    fake_log._fix_eventlet_logging()  # what oslo_log.log.setup() calls
    assert calls == (["green logging lock"] if patched else [])
