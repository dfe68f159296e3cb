"""AMIs outlive the sim daemon (issue 16, point 5): a real daemon process with a real moto is killed
and started again, and the image it had registered is there with the same id, name, tags and
launch permission; a deregistered one is not."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from provision.ec2.plan import BUILD_ID_TAG
from sim import amis
from sim.aws import ec2_client
from sim.state import ROOT

REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    """``python -m sim.daemon`` on free loopback ports (metadata on 127.0.0.1, not the sim's address)."""

    def __init__(self, registry: Path, log: Path) -> None:
        self.registry, self.log = registry, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Any:
        port = free_port()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sim.daemon", "--port", str(port), "--region", REGION, "--imds-host", "127.0.0.1",
                 "--imds-port", str(free_port()), "--amis", str(self.registry)],
                stdout=out, stderr=subprocess.STDOUT, cwd=str(ROOT), start_new_session=True,
            )
        ec2 = ec2_client(f"http://127.0.0.1:{port}", REGION)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                ec2.describe_regions()
                return ec2
            except Exception:
                time.sleep(0.3)
        pytest.fail(f"the daemon did not answer:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL, as a crash or a host reboot ends it: no chance to write anything at exit."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path / "moto-amis.json", tmp_path / "daemon.log")
    yield d
    d.kill()


def wait_for_record(registry: Path, ami: str, want: dict[str, Any]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        recs = {r["ami_id"]: r for r in amis.read(registry)}
        if ami in recs and all(recs[ami].get(k) == v for k, v in want.items()):
            return
        time.sleep(0.3)
    pytest.fail(f"{ami} with {want} never reached {registry}: {amis.read(registry)}")


def test_an_ami_survives_a_killed_daemon_and_a_deregistered_one_does_not(daemon: Daemon) -> None:
    ec2 = daemon.start()
    kept = ec2.register_image(Name="coa-test-kept", Description="built", Architecture="x86_64", RootDeviceName="/dev/xvda",
                              VirtualizationType="hvm")["ImageId"]
    ec2.create_tags(Resources=[kept], Tags=[{"Key": BUILD_ID_TAG, "Value": "b-1"}, {"Key": "Name", "Value": "kept"}])
    ec2.modify_image_attribute(ImageId=kept, LaunchPermission={"Add": [{"Group": "all"}]})
    gone = ec2.register_image(Name="coa-test-gone", Architecture="x86_64", RootDeviceName="/dev/xvda")["ImageId"]
    wait_for_record(daemon.registry, kept, {"public": True, "tags": {BUILD_ID_TAG: "b-1", "Name": "kept"}})
    ec2.deregister_image(ImageId=gone)
    deadline = time.monotonic() + 20
    while gone in {r["ami_id"] for r in amis.read(daemon.registry)} and time.monotonic() < deadline:
        time.sleep(0.3)
    before = ec2.describe_images(ImageIds=[kept])["Images"][0]
    daemon.kill()

    ec2 = daemon.start()
    images = {i["ImageId"]: i for i in ec2.describe_images(Owners=["self"])["Images"]}
    assert set(images) == {kept}
    img = images[kept]
    # The same description, but what moto's loader cannot carry (sim.amis): the auto-snapshot's id
    # and the owner alias it gives every loaded AMI; tags compared as a mapping (EC2 keeps no order).
    def comparable(image: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in image.items() if k not in {"BlockDeviceMappings", "ImageOwnerAlias"}}
        out["Tags"] = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
        return out

    assert comparable(img) == comparable(before)
    assert (img["Name"], img["Description"], img["Public"]) == ("coa-test-kept", "built", True)
    assert comparable(img)["Tags"] == {BUILD_ID_TAG: "b-1", "Name": "kept"}
    assert ec2.describe_image_attribute(ImageId=kept, Attribute="launchPermission")["LaunchPermissions"] == [{"Group": "all"}]
    # moto's own AMIs are still there beside ours (other tests and tools launch them).
    assert ec2.describe_images(Owners=["amazon"])["Images"]
    # And it launches: RunInstances takes the restored id.
    assert ec2.run_instances(ImageId=kept, InstanceType="m1.xlarge", MinCount=1, MaxCount=1)["Instances"][0]["ImageId"] == kept


def test_a_daemon_without_a_registry_file_starts_with_moto_as_it_is(daemon: Daemon) -> None:
    ec2 = daemon.start()
    assert ec2.describe_images(Owners=["self"])["Images"] == []
    assert ec2.describe_images(Owners=["amazon"])["Images"]
    assert not daemon.registry.exists()


def test_moto_record_keeps_what_describe_images_says() -> None:
    image = {
        "ImageId": "ami-0123456789abcdef0", "Name": "n", "Description": "d", "OwnerId": "123456789012", "Public": False,
        "State": "available", "Architecture": "x86_64", "VirtualizationType": "hvm", "Hypervisor": "xen", "ImageType": "machine",
        "RootDeviceType": "ebs", "RootDeviceName": "/dev/xvda", "SriovNetSupport": "simple", "CreationDate": "2026-12-03T08:00:00.000Z",
        "Tags": [{"Key": "k", "Value": "v"}], "BootMode": "uefi",
    }
    assert amis.moto_record(image) == {
        "ami_id": "ami-0123456789abcdef0", "name": "n", "description": "d", "owner_id": "123456789012", "public": False,
        "state": "available", "architecture": "x86_64", "virtualization_type": "hvm", "hypervisor": "xen", "image_type": "machine",
        "root_device_type": "ebs", "root_device_name": "/dev/xvda", "sriov": "simple", "creation_date": "2026-12-03T08:00:00.000Z",
        "tags": {"k": "v"}, "boot_mode": "uefi",
    }


def test_only_a_builds_images_count_as_built() -> None:
    assert amis.built_by_a_build({"tags": {BUILD_ID_TAG: "b"}})
    assert not amis.built_by_a_build({"tags": {"Name": "coa-sim-relaunch-i-1"}})
    assert not amis.built_by_a_build({})


def test_keep_only_drops_the_rest_and_an_empty_registry_is_no_file(tmp_path: Path) -> None:
    path = tmp_path / "moto-amis.json"
    amis.write(path, [{"ami_id": "ami-1"}, {"ami_id": "ami-2"}])
    assert amis.keep_only(path, ["ami-2", "ami-3"]) == [{"ami_id": "ami-2"}]
    assert amis.read(path) == [{"ami_id": "ami-2"}]
    amis.keep_only(path, [])
    assert not path.exists()
