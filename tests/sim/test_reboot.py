"""One reboot of the simulated instance (same instance, same IP) and what must hold after it.

A reboot costs minutes, so the module reboots once (the ``rebooted`` fixture) and every test
checks one aspect of that same reboot: Ceph is not re-addressed, the one bootable volume and the
one demo server are kept, the per-boot jobs report "unchanged". The reliability suite reboots
more times in a row (test_reliability.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from provision.ceph import boot as ceph_boot
from provision.ceph import health
from tests.sim.names import assert_cloud_init_done_and_names_ours
from tests.sim.test_ceph import HEALTH_TIMEOUT_S, boot_log
from tests.sim.test_compute import console_log, demo_servers
from tests.sim.test_openstack import boot_volumes, last_boot_entry

pytestmark = pytest.mark.docker

DEMO_JOURNAL = "journalctl -o cat --no-pager -u coa-openstack-demo-server"


def demo_journal(sim: Any) -> list[str]:
    """The demo-server job's journal, every boot (``-b`` would not help: a container shares the host's boot id)."""
    return sim.target.run(DEMO_JOURNAL).stdout.splitlines()


@pytest.fixture(scope="module")
def rebooted(sim: Any) -> dict[str, Any]:
    """What the instance looked like before one reboot, and ``sim.reboot()``'s status after it."""
    before = {
        "status": sim.status(),
        "boot_log_lines": len(boot_log(sim)),
        "boot_volumes": boot_volumes(sim),
        "servers": demo_servers(sim),
        "demo_journal_lines": len(demo_journal(sim)),
    }
    return {"before": before, "after": sim.reboot()}


def test_same_instance_same_ip_and_ready(rebooted: dict[str, Any]) -> None:
    before, after = rebooted["before"]["status"], rebooted["after"]
    assert (after["instance_id"], after["private_ip"]) == (before["instance_id"], before["private_ip"])
    assert after["ready"], after["checks"]


def test_monitor_is_not_readdressed(sim: Any, rebooted: dict[str, Any]) -> None:
    health.wait_healthy(sim.target, sim.settings, timeout=HEALTH_TIMEOUT_S)
    new = [line for line in boot_log(sim)[rebooted["before"]["boot_log_lines"]:] if " readdress " in line]
    assert new, "the readdress job left no line in the boot log"
    assert all(" readdress unchanged: " + ceph_boot.UNCHANGED_MARK in line for line in new), new


def test_still_one_boot_volume_and_unchanged_endpoints(sim: Any, rebooted: dict[str, Any]) -> None:
    first = rebooted["before"]["boot_volumes"]
    assert len(first) == 1
    vols = boot_volumes(sim)
    assert [v["ID"] for v in vols] == [first[0]["ID"]]
    assert vols[0]["Status"] == "in-use"  # the demo server's root disk
    entry = last_boot_entry(sim, "openstack-endpoints")
    assert entry["changed"] is False and "unchanged" in entry["detail"]


def test_the_same_demo_server_is_resumed(sim: Any, rebooted: dict[str, Any]) -> None:
    before = rebooted["before"]["servers"]
    after = demo_servers(sim)
    assert [s["ID"] for s in after] == [s["ID"] for s in before] and after[0]["Status"] == "ACTIVE"
    journal = demo_journal(sim)[rebooted["before"]["demo_journal_lines"]:]  # this boot's lines
    assert any("unchanged: cephdemo-server is server" in line for line in journal), journal
    assert "login:" in console_log(sim, "login:")


def test_cloud_init_done_and_names_ours(sim: Any, rebooted: dict[str, Any]) -> None:
    assert_cloud_init_done_and_names_ours(sim)
