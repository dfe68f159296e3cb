"""The sim's cloud from the host, as a user drives a cloud: `invoke sim.clouds` writes a clouds.yaml
entry, and the real `openstack` CLI on the host (python-openstackclient, over TLS, through the
catalog's public endpoints by the instance's public name) lists the demo server and its Ceph
boot volume (issue 17, point 2)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sim import clouds

pytestmark = pytest.mark.docker


def openstack(config: Path, *args: str) -> Any:
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(config)}
    r = subprocess.run(["openstack", "--os-cloud", clouds.CLOUD_NAME, *args, "-f", "json"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def clouds_yaml(sim: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clouds") / "clouds.yaml"
    r = subprocess.run([sys.executable, "-m", "invoke", "sim.clouds", "--path", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "openstack --os-cloud cephdemo-sim server list" in r.stdout
    return path


def test_the_entry_is_the_owners_alone_and_names_the_public_endpoint(sim: Any, clouds_yaml: Path) -> None:
    assert stat.S_IMODE(clouds_yaml.stat().st_mode) == 0o600
    entry = yaml.safe_load(clouds_yaml.read_text())["clouds"][clouds.CLOUD_NAME]
    public = sim.status()["public_hostname"]
    assert entry["auth"]["auth_url"] == f"https://{public}:{sim.settings.tls.keystone_port}/v3"
    assert Path(entry["cacert"]).read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    hosts = Path("/etc/hosts").read_text()
    assert f"{sim.status()['private_ip']} {public}" in hosts.split(clouds.BEGIN, 1)[1].split(clouds.END, 1)[0]


def test_the_openstack_cli_on_the_host_lists_the_demo_server_and_its_boot_volume(sim: Any, clouds_yaml: Path) -> None:
    servers = openstack(clouds_yaml, "server", "list", "--name", f"^{sim.settings.openstack.server_name}$")
    assert [(s["Name"], s["Status"]) for s in servers] == [(sim.settings.openstack.server_name, "ACTIVE")]
    volumes = openstack(clouds_yaml, "volume", "list", "--name", sim.settings.boot_volume_name)
    assert [v["Name"] for v in volumes] == [sim.settings.boot_volume_name]
