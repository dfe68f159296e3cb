"""Ceph on the simulated instance: HEALTH_OK, pools, users and keyrings, idempotent provisioning.

Needs the ``sim`` session fixture (tests/sim/conftest.py): ``.target``, ``.settings``,
``.status()`` -> ``instance_id``/``private_ip``/``public_hostname``. What a reboot and a new
instance do to Ceph is checked in test_reboot.py and test_relaunch.py (one of each, shared).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from provision.ceph import auth, cli, health
from provision.ceph import boot as ceph_boot
from provision.ceph import steps as ceph_steps
from provision.steps import run_steps
from provision.systemd import bounded, unit_enabled
from provision.target import Target

pytestmark = pytest.mark.docker

IMAGE = "volumes/coa-sim-ceph-check"
HEALTH_TIMEOUT_S = 300


def boot_log(sim: Any) -> list[str]:
    """Lines of the boot jobs' log (``<state_dir>/ceph-boot.log``), empty when absent."""
    r = sim.target.run(["cat", f"{sim.settings.state_dir}/{ceph_boot.LOG_NAME}"], check=False)
    return r.stdout.splitlines() if r.ok else []


def mon_vectors(target: Target, settings: Any) -> list[str]:
    """Every ``type:addr`` of every monitor, from ``ceph mon dump -f json``."""
    dump = json.loads(cli.ceph(target, settings, "mon", "dump", "-f", "json").stdout)
    return [f"{a['type']}:{a['addr']}" for m in dump["mons"] for a in m["public_addrs"]["addrvec"]]


def client_keys(target: Target, settings: Any) -> dict[str, str]:
    """The cephx keys of the clients OpenStack uses, and client.admin's."""
    names = [c.entity for c in auth.clients(settings)] + ["client.admin"]
    return {n: cli.ceph(target, settings, "auth", "get-key", n).stdout.strip() for n in names}


def reused_keys(keys: dict[str, str], earlier: dict[str, str]) -> list[str]:
    """The entities of ``keys`` whose key is the one they had in ``earlier``."""
    return [name for name in keys if keys[name] == earlier[name]]


def image_sha256(target: Target, settings: Any) -> str:
    """sha256 of the test image's content, read through client.volumes (its caps are part of the test)."""
    r = target.run(
        bounded(["sh", "-c", f"rbd --id {settings.volume_pool} export {IMAGE} - 2>/dev/null | sha256sum"])
    )
    return r.stdout.split()[0]


def test_health_ok_after_up(sim: Any) -> None:
    status = health.wait_healthy(sim.target, sim.settings, timeout=HEALTH_TIMEOUT_S)
    assert status["health"]["status"] == "HEALTH_OK"
    c = sim.settings.ceph
    assert status["osdmap"]["num_up_osds"] == c.osd_count
    units = [f"ceph-mon@{c.mon_id}", f"ceph-mgr@{c.mgr_id}", *(f"ceph-osd@{i}" for i in range(c.osd_count)), "ceph.target"]
    for unit in units:
        assert unit_enabled(sim.target, unit), f"{unit} is not enabled: it would not start at boot"
    ip = sim.status()["private_ip"]
    assert f"v2:{ip}:3300" in mon_vectors(sim.target, sim.settings)


def test_pools_users_and_keyrings(sim: Any) -> None:
    t, s = sim.target, sim.settings
    pools = json.loads(cli.ceph(t, s, "osd", "pool", "ls", "detail", "-f", "json").stdout)
    by_name = {p["pool_name"]: p for p in pools}
    for pool in s.ceph.pools:
        assert "rbd" in by_name[pool]["application_metadata"]
    for client in auth.clients(s):
        got = auth.auth_get(t, s, client.entity)
        assert got is not None and got["caps"] == dict(client.caps)
        state = t.file_state(cli.paths(s).keyring(client.entity))
        assert state is not None and (state.mode, state.owner, state.group) == (0o640, "root", client.group)
    admin = t.file_state(cli.paths(s).admin_keyring)
    assert admin is not None and (admin.mode, admin.owner) == (0o600, "root")


def test_provisioning_again_changes_nothing(sim: Any) -> None:
    ip = sim.status()["private_ip"]
    report = run_steps(sim.target, sim.settings, ceph_steps.steps(sim.settings, sim.settings.profile, ip), log=lambda _: None)
    changed = [r.line() for r in report.results if r.changed]
    assert changed == [], changed
    assert all(r.detail for r in report.results)


