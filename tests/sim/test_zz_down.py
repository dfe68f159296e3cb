"""Runs last in the sim tier: a sim daemon killed under the instance is named, and `sim.up` does not
throw the instance away; `sim.down` keeps the AMI the session built (as EC2 keeps AMIs, the daemon's
crash included) and nothing else (test_yy_build_ami launches it after a `sim.down`);
a `sim.up` stopped by SIGTERM removes what it started and keeps the AMI;
`ami.deregister --sim` removes it, after which `sim.down` leaves nothing labelled, and a second one
is a no-op (issue 16, point 5)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from provision.settings import Settings
from sim import clouds

pytestmark = pytest.mark.docker

LABEL = "ceph-openstack-ami.sim"


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "invoke", *args], capture_output=True, text=True)


def ami_tags(docker_client: Any) -> list[str]:
    return sorted(t for i in docker_client.images.list() for t in i.tags if t.startswith("ceph-openstack-ami/ami:"))


def assert_no_cloud_left(docker_client: Any) -> None:
    assert docker_client.containers.list(all=True, filters={"label": LABEL}) == []
    assert docker_client.networks.list(filters={"label": LABEL}) == []
    assert subprocess.run(["ip", "link", "show", "coa-sim0"], capture_output=True).returncode != 0
    cached = {t.split(":")[0] for i in docker_client.images.list() for t in i.tags if t.startswith("ceph-openstack-ami/")} - {"ceph-openstack-ami/ami"}
    assert cached == {"ceph-openstack-ami/base", "ceph-openstack-ami/os"}  # kept for the next sim.up


@pytest.fixture(scope="module")
def built_ami(sim: Any) -> dict[str, Any]:
    """The session's AMI: its id, its content (image tag, snapshot volume) and how moto described it."""
    ami = sim.built["ami"]
    tag, disk = sim.image_of(ami)
    return {"ami": ami, "tag": tag, "disk": disk, "image": sim.ec2().describe_images(ImageIds=[ami])["Images"][0]}


def test_a_daemon_that_died_under_the_instance_is_named_and_up_keeps_the_instance(sim: Any, built_ami: dict[str, Any], docker_client: Any) -> None:
    """SIGKILL, as a crash or the OOM killer ends it: status says so in one line, up refuses to throw the instance away."""
    from sim.lifecycle import Sim

    s = Sim(Settings(), log=print)
    pid, container = s.state.daemon_pid, s.state.container
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while s.cloud.daemon_alive() and time.monotonic() < deadline:
        time.sleep(0.5)
    status = invoke("sim.status")
    assert status.returncode == 0, status.stderr
    problem = [line for line in status.stdout.splitlines() if line.startswith("problem:")]
    assert len(problem) == 1 and f"died under instance {s.state.instance_id}" in problem[0] and "invoke sim.down" in problem[0]
    up = invoke("sim.up")
    assert up.returncode != 0 and "died under instance" in (up.stdout + up.stderr)
    assert docker_client.containers.get(container).status == "running"  # nothing thrown away


def test_down_keeps_the_built_ami_and_nothing_else(built_ami: dict[str, Any], docker_client: Any) -> None:
    first = invoke("sim.down")
    assert first.returncode == 0, first.stderr
    assert_no_cloud_left(docker_client)
    assert [v.name for v in docker_client.volumes.list(filters={"label": LABEL})] == [built_ami["disk"]]
    assert ami_tags(docker_client) == [built_ami["tag"]]
    second = invoke("sim.down")
    assert second.returncode == 0 and "nothing to remove" in second.stdout
    assert clouds.BEGIN not in Path("/etc/hosts").read_text()  # sim.clouds' block went with it
    status = invoke("sim.status", "--json")
    assert status.returncode == 0 and built_ami["ami"] in status.stdout


def test_a_failed_up_leaves_nothing_running_that_it_started(built_ami: dict[str, Any], docker_client: Any) -> None:
    """SIGTERM (what `kill` or a CI runner's timeout sends) once the instance is launched: the cloud is
    down, so sim.up started the daemon, the network and the instance; all of them go, the AMI stays."""
    p = subprocess.Popen([sys.executable, "-m", "invoke", "sim.up", "--ami", built_ami["ami"]], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    assert p.stdout is not None
    seen = []
    for line in p.stdout:
        seen.append(line)
        if "starting container" in line:
            break
    p.send_signal(signal.SIGTERM)
    rest, _ = p.communicate(timeout=300)
    out = "".join(seen) + rest
    assert p.returncode != 0, out
    assert "sim.up failed (SIGTERM received): removing what it started" in out, out
    assert_no_cloud_left(docker_client)
    assert [v.name for v in docker_client.volumes.list(filters={"label": LABEL})] == [built_ami["disk"]]
    assert ami_tags(docker_client) == [built_ami["tag"]]


def test_deregister_removes_the_ami_and_its_content_then_down_leaves_nothing(built_ami: dict[str, Any], docker_client: Any) -> None:
    from sim.lifecycle import Sim

    ami = built_ami["ami"]
    r = invoke("ami.deregister", ami, "--sim")  # the cloud is down: its kept registration goes (on a live cloud: DeregisterImage)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"removed image {ami}" in r.stdout
    assert built_ami["tag"] not in ami_tags(docker_client)
    s = Sim(Settings(), log=print)
    s.cloud.ensure()  # a new daemon: the deregistered AMI does not come back
    assert [i for i in s.ec2().describe_images(Owners=["self"])["Images"] if i["ImageId"] == ami] == []
    again = invoke("ami.deregister", ami, "--sim")
    assert again.returncode != 0 and "not in this sim" in (again.stdout + again.stderr)
    first = invoke("sim.down")
    assert first.returncode == 0, first.stderr
    assert_no_cloud_left(docker_client)
    assert docker_client.volumes.list(filters={"label": LABEL}) == []
    assert ami_tags(docker_client) == []
    second = invoke("sim.down")
    assert second.returncode == 0 and "nothing to remove" in second.stdout
