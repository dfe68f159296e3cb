"""Runs last in the sim tier: `sim.down` leaves nothing labelled, and a second one is a no-op."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

pytestmark = pytest.mark.docker

LABEL = "ceph-openstack-ami.sim"


def test_down_leaves_nothing_labelled(sim: Any, docker_client: Any) -> None:
    first = subprocess.run([sys.executable, "-m", "invoke", "sim.down"], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert docker_client.containers.list(all=True, filters={"label": LABEL}) == []
    assert docker_client.networks.list(filters={"label": LABEL}) == []
    assert docker_client.volumes.list(filters={"label": LABEL}) == []
    leftover = [t for i in docker_client.images.list() for t in i.tags if t.startswith("ceph-openstack-ami/ami:")]
    assert leftover == []
    cached = {t.split(":")[0] for i in docker_client.images.list() for t in i.tags if t.startswith("ceph-openstack-ami/")}
    assert cached == {"ceph-openstack-ami/base", "ceph-openstack-ami/os"}  # kept for the next sim.up
    assert subprocess.run(["ip", "link", "show", "coa-sim0"], capture_output=True).returncode != 0
    second = subprocess.run([sys.executable, "-m", "invoke", "sim.down"], capture_output=True, text=True)
    assert second.returncode == 0 and "nothing to remove" in second.stdout
