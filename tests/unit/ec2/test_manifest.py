"""The Packer-style manifest: the entry's shape and appending."""

from __future__ import annotations

from pathlib import Path

from provision.ec2.manifest import manifest_entry, merge_manifest
from provision.image.updates import Package

from .helpers import (
    NAME,
    plan_for,
)


def test_manifest_has_packers_shape_and_appends(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, regions=["eu-west-1"], public=True, custom_data={"git_sha": "abc123"})
    packages = [Package("ceph-mon", "16.2.15+ds-0+deb12u1", "amd64"), Package("tzdata", "2024a-0+deb12u1", "all")]
    entry = manifest_entry(plan, {"us-east-1": "ami-11111111", "eu-west-1": "ami-22222222"}, "ami-00000000", 1_700_000_000, packages, verified=True)
    assert entry == {
        "name": "ceph-openstack-ami.debian-12",
        "builder_type": "ceph-openstack-ami",
        "build_time": 1_700_000_000,
        "files": None,
        "artifact_id": "us-east-1:ami-11111111,eu-west-1:ami-22222222",
        "packer_run_uuid": plan.build_id,
        "custom_data": {
            "ami_name": NAME,
            "profile": "debian-12",
            "source_ami": "ami-00000000",
            "instance_type": "m1.xlarge",
            "region": "us-east-1",
            "regions": "us-east-1,eu-west-1",
            "public": "true",
            "build_id": plan.build_id,
            "verified": "true",
            "git_sha": "abc123",
        },
        "packages": [
            {"name": "ceph-mon", "version": "16.2.15+ds-0+deb12u1", "architecture": "amd64"},
            {"name": "tzdata", "version": "2024a-0+deb12u1", "architecture": "all"},
        ],
    }
    first = merge_manifest(None, entry)
    assert first == {"builds": [entry], "last_run_uuid": plan.build_id}
    second_entry = {**entry, "packer_run_uuid": "other"}
    second = merge_manifest(first, second_entry)
    assert [b["packer_run_uuid"] for b in second["builds"]] == [plan.build_id, "other"]
    assert second["last_run_uuid"] == "other"
