"""EC2's third way back: stop/start keeps the instance-id, the private IP and every secret; the public
IPv4 and name are new, and what names them follows (catalog, dashboard, noVNC, the certificate).

One stop/start for the module (a boot costs a minute); each test checks one aspect of it.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from provision import tls
from provision.openstack.dashboard import DASHBOARD_OVERRIDES
from provision.openstack.ini import parse_ini
from tests.sim import inventory
from tests.sim.names import assert_cloud_init_done_and_names_ours
from tests.sim.test_openstack import endpoints
from tests.sim.test_tls import console_fingerprints

pytestmark = pytest.mark.docker

PER_INSTANCE = ("coa-ceph-mon-key", "coa-ceph-keys", "coa-openstack-broker", "coa-openstack-secrets", "coa-openstack-boot-volume")


@pytest.fixture(scope="module")
def restarted(sim: Any) -> Iterator[dict[str, Any]]:
    """The instance before (status, every secret) and after one stop/start."""
    before = {"status": sim.status(), "secrets": inventory.inventory(sim.target, sim.settings),
              "journal_lines": int(sim.target.run("journalctl -o cat --no-pager | wc -l").stdout)}
    stopped = sim.stop()
    after = sim.start()
    yield {"before": before, "stopped": stopped, "after": after}


def test_same_ids_and_private_ip_new_public_name(restarted: dict[str, Any]) -> None:
    before, stopped, after = restarted["before"]["status"], restarted["stopped"], restarted["after"]
    assert stopped["state"] == "stopped" and after["state"] == "running" and after["ready"], after["checks"]
    assert (after["instance_id"], after["private_ip"]) == (before["instance_id"], before["private_ip"])
    assert after["public_hostname"] != before["public_hostname"] and after["public_ip"] != before["public_ip"]


def test_no_secret_changed_and_no_per_instance_job_ran(sim: Any, restarted: dict[str, Any]) -> None:
    assert inventory.inventory(sim.target, sim.settings) == restarted["before"]["secrets"]
    journal = sim.target.run("journalctl -o cat --no-pager | tail -n +%s", restarted["before"]["journal_lines"] + 1).stdout
    for unit in PER_INSTANCE:
        name = unit.removeprefix("coa-")
        assert f"{name}: a new instance" not in journal, unit


def test_catalog_dashboard_novnc_and_certificate_follow_the_new_name(sim: Any, restarted: dict[str, Any]) -> None:
    t, s, name = sim.target, sim.settings, restarted["after"]["public_hostname"]
    old = restarted["before"]["status"]["public_hostname"]
    public = [e["URL"] for e in endpoints(t) if e["Interface"] == "public"]
    assert len(public) == 6 and all(u.startswith(f"https://{name}:") for u in public)
    hosts = t.read(DASHBOARD_OVERRIDES).decode()
    assert repr(name) in hosts and old not in hosts
    vnc = parse_ini(t.read("/etc/nova/nova.conf").decode())["vnc"]
    assert vnc["novncproxy_base_url"].startswith(f"https://{name}:{s.tls.novnc_port}/")
    sans = tls.parse_sans(t.run(tls.sans_argv(tls.cert_files(s).cert)).stdout)
    assert f"DNS:{name}" in sans and f"DNS:{old}" not in sans
    # the same key (no secret changed), a new certificate, its fingerprint on the console
    assert console_fingerprints(sim)[-1] == tls.served_fingerprint(t, s)


def test_cloud_init_done_and_names_ours_on_the_new_public_name(sim: Any, restarted: dict[str, Any]) -> None:
    assert_cloud_init_done_and_names_ours(sim)
