"""The whole build against moto (offline): the happy paths, on_error=abort, name collisions, and the first errors a user meets."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from provision.ec2.plan import BUILD_ID_TAG, ROLE_TAG, STAGES, BuilderHost
from provision.ec2.shapes import METADATA_OPTIONS, image_snapshot_ids
from provision.exceptions import AwsError, ConfigError
from provision.profiles import record_proven

from .helpers import (
    CALLER,
    DEBIAN_OLD,
    NAME,
    OTHER,
    PROFILE,
    REGION,
    Boom,
    after,
    clients_with,
    ec2_snapshots,
    image_from_instance,
    inventory,
    new_session,
    options,
    run_build,
)


def test_happy_path_public_with_a_copy(tmp_path: Path, ec2: Any, ec2_other: Any, source_ami: str) -> None:
    before = inventory()
    seen: dict[str, Any] = {}
    hooks: list[tuple[str, str]] = []
    imds_calls: list[dict[str, Any]] = []
    logs: list[str] = []

    def provision(host: BuilderHost) -> None:
        inst = ec2.describe_instances(InstanceIds=[host.instance_id])["Reservations"][0]["Instances"][0]
        seen["state"] = inst["State"]["Name"]
        seen["metadata"] = inst["MetadataOptions"]
        seen["instance_type"] = inst["InstanceType"]
        seen["tags"] = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
        seen["image"] = inst["ImageId"]
        group_id = inst["SecurityGroups"][0]["GroupId"]
        seen["rules"] = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]["IpPermissions"]
        seen["key_mode"] = stat.S_IMODE(os.stat(host.key_path).st_mode)
        seen["key_text"] = Path(host.key_path).read_text()
        seen["host"] = host

    def record_imds(params: dict[str, Any], **_: Any) -> None:
        if "ImdsSupport" in params:
            imds_calls.append(params)

    clients = clients_with(("*", "before-parameter-build.ec2.ModifyImageAttribute", record_imds))
    result = run_build(
        options(tmp_path, public=True, regions=[OTHER], custom_data={"git_sha": "abc"}),
        provision,
        clients=clients,
        on_image_created=lambda ami, iid: hooks.append((ami, iid)),
        log=logs.append,
        build_id="0f0f0f0f-1111-2222-3333-444444444444",
    )

    # The builder: m1.xlarge from the source image, IMDSv2 required, SSH from the caller only, a 0600 ed25519 key.
    assert seen["state"] == "running"
    assert seen["image"] == source_ami
    assert seen["instance_type"] == "m1.xlarge"
    assert {k: seen["metadata"][k] for k in METADATA_OPTIONS} == METADATA_OPTIONS
    assert seen["tags"][BUILD_ID_TAG] == result.build_id and seen["tags"][ROLE_TAG] == "builder"
    assert len(seen["rules"]) == 1
    rule = seen["rules"][0]
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 22, 22)
    assert [r["CidrIp"] for r in rule["IpRanges"]] == [f"{CALLER}/32"] and not rule.get("Ipv6Ranges")
    assert seen["key_mode"] == 0o600 and "OPENSSH PRIVATE KEY" in seen["key_text"]
    host: BuilderHost = seen["host"]
    assert host.user == "admin" and host.public_ip and host.pkey is not None
    assert host.ssh_command().startswith(f"ssh -i {host.key_path}")
    assert not Path(host.key_path).exists(), "the temporary key is removed after the build"

    # The images: one per region, available, tagged (snapshots too), public, IMDSv2 requested.
    assert list(result.ami_ids) == [REGION, OTHER]
    assert hooks == [(result.ami_ids[REGION], host.instance_id)]
    for region, client in ((REGION, ec2), (OTHER, ec2_other)):
        ami = result.ami_ids[region]
        image = client.describe_images(ImageIds=[ami])["Images"][0]
        assert image["State"] == "available" and image["Name"] == NAME
        tags = {t["Key"]: t["Value"] for t in image["Tags"]}
        assert tags["Name"] == NAME and tags[BUILD_ID_TAG] == result.build_id and tags[ROLE_TAG] == "image"
        assert tags["ceph-openstack-ami:source-ami"] == source_ami
        snaps = image_snapshot_ids(image)
        assert snaps
        for snap in client.describe_snapshots(SnapshotIds=snaps)["Snapshots"]:
            assert {t["Key"]: t["Value"] for t in snap["Tags"]}[BUILD_ID_TAG] == result.build_id
        perms = client.describe_image_attribute(ImageId=ami, Attribute="launchPermission")["LaunchPermissions"]
        assert {"Group": "all"} in perms
    assert {(c["ImageId"], c["ImdsSupport"]["Value"]) for c in imds_calls} == {(a, "v2.0") for a in result.ami_ids.values()}
    assert any("cannot tell whether AMI block public access" in line for line in logs)

    # The manifest, in Packer's shape.
    manifest = json.loads(Path(result.manifest_path).read_text())
    assert manifest["last_run_uuid"] == result.build_id
    (entry,) = manifest["builds"]
    assert entry["builder_type"] == "ceph-openstack-ami" and entry["files"] is None
    assert isinstance(entry["build_time"], int)
    assert entry["artifact_id"] == f"{REGION}:{result.ami_ids[REGION]},{OTHER}:{result.ami_ids[OTHER]}"
    assert entry["packer_run_uuid"] == result.build_id
    assert entry["custom_data"]["source_ami"] == source_ami and entry["custom_data"]["git_sha"] == "abc"

    # Nothing temporary is left: only the two images (and their snapshots) are new.
    after_ = inventory()
    for region in (REGION, OTHER):
        assert after_[region]["instances"] == before[region]["instances"]
        assert after_[region]["key_pairs"] == before[region]["key_pairs"] == []
        assert after_[region]["security_groups"] == before[region]["security_groups"] == []
        assert after_[region]["volumes"] == before[region]["volumes"]
        assert set(after_[region]["images"]) - set(before[region]["images"]) == {result.ami_ids[region]}
    assert set(STAGES) <= set(result.timings) and result.leftovers == []


def test_private_build_uses_no_publish_and_appends_to_the_manifest(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    first = run_build(options(tmp_path, ami_name="coa-first"))
    second = run_build(options(tmp_path, ami_name="coa-second"))
    image = ec2.describe_images(ImageIds=[first.ami_ids[REGION]])["Images"][0]
    assert image["Public"] is False
    assert ec2.describe_image_attribute(ImageId=first.ami_ids[REGION], Attribute="launchPermission")["LaunchPermissions"] == []
    manifest = json.loads(Path(second.manifest_path).read_text())
    assert [b["packer_run_uuid"] for b in manifest["builds"]] == [first.build_id, second.build_id]
    assert manifest["last_run_uuid"] == second.build_id


def test_explicit_source_ami_is_used(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    launched: list[str] = []

    def provision(host: BuilderHost) -> None:
        launched.append(ec2.describe_instances(InstanceIds=[host.instance_id])["Reservations"][0]["Instances"][0]["ImageId"])

    result = run_build(options(tmp_path, source_ami=DEBIAN_OLD), provision)
    assert launched == [DEBIAN_OLD] and result.source_ami == DEBIAN_OLD


def test_on_error_abort_keeps_the_builder_and_says_how_to_reach_it(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    logs: list[str] = []
    hosts: list[BuilderHost] = []

    def provision(host: BuilderHost) -> None:
        hosts.append(host)
        raise Boom("ceph-mon did not start")

    with pytest.raises(Boom):
        run_build(options(tmp_path, on_error="abort"), provision, log=logs.append)
    (host,) = hosts
    try:
        inst = ec2.describe_instances(InstanceIds=[host.instance_id])["Reservations"][0]["Instances"][0]
        assert inst["State"]["Name"] == "running"
        assert len(ec2.describe_key_pairs()["KeyPairs"]) == 1
        assert Path(host.key_path).exists()
        assert any(host.ssh_command() in line for line in logs)
        assert any(f"aws ec2 terminate-instances --region {REGION} --instance-ids {host.instance_id}" in line for line in logs)
    finally:
        shutil.rmtree(Path(host.key_path).parent, ignore_errors=True)


# --- names: collisions and force ------------------------------------------------------------------------


def test_existing_name_is_refused_before_anything_is_made(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    old = image_from_instance(ec2, NAME)
    before = inventory()
    with pytest.raises(ConfigError, match=f"named '{NAME}' already exists in {REGION} \\({old}\\)"):
        run_build(options(tmp_path))
    assert inventory() == before


def test_existing_name_in_a_copy_region_is_refused(tmp_path: Path, ec2: Any, ec2_other: Any, source_ami: str) -> None:
    image_from_instance(ec2_other, NAME)
    before = inventory()
    with pytest.raises(ConfigError, match=f"already exists in {OTHER}"):
        run_build(options(tmp_path, regions=[OTHER]))
    assert inventory() == before


def test_force_replaces_the_old_image_and_its_snapshots(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    old = image_from_instance(ec2, NAME)
    old_snaps = ec2_snapshots(ec2, old)
    result = run_build(options(tmp_path, force=True))
    named = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [NAME]}])["Images"]
    assert [i["ImageId"] for i in named] == [result.ami_ids[REGION]] != [old]
    remaining = {s["SnapshotId"] for s in ec2.describe_snapshots(Filters=[{"Name": "owner-id", "Values": ["123456789012"]}])["Snapshots"]}
    assert not set(old_snaps) & remaining


# --- the first errors a user meets: one clear line, nothing made -------------------------------------------


def test_unknown_region(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    before = inventory()
    with pytest.raises(ConfigError, match="Unknown EC2 region 'us-esat-1'") as e:
        run_build(options(tmp_path, region="us-esat-1"))
    assert "us-east-1" in (e.value.hint or "")
    assert inventory() == before


def test_bogus_instance_type(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    before = inventory()
    with pytest.raises(ConfigError, match="EC2 has no instance type 'x9.bogus'"):
        run_build(options(tmp_path, instance_type="x9.bogus"))
    assert inventory() == before


def test_instance_type_not_offered_in_the_region(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    before = inventory()
    none_offered = after("DescribeInstanceTypeOfferings", lambda parsed: parsed.update(InstanceTypeOfferings=[]))
    with pytest.raises(ConfigError, match="'m1.xlarge' is not offered in us-east-1"):
        run_build(options(tmp_path), clients=clients_with(none_offered))
    assert inventory() == before


@pytest.mark.parametrize(
    ("ami", "error", "match"),
    [("ami-nothex!", ConfigError, "Malformed AMI id"), ("ami-0123456789abcdef0", ConfigError, "does not exist in us-east-1")],
)
def test_bad_source_ami(tmp_path: Path, ec2: Any, source_ami: str, ami: str, error: type[Exception], match: str) -> None:
    before = inventory()
    with pytest.raises(error, match=match):
        run_build(options(tmp_path, source_ami=ami))
    assert inventory() == before


def test_no_credentials(tmp_path: Path, ec2: Any, source_ami: str, monkeypatch: pytest.MonkeyPatch) -> None:
    before = inventory()
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(AwsError) as e:
        run_build(options(tmp_path), session=new_session())
    assert str(e.value).splitlines()[0] == "No AWS credentials found"
    assert "aws configure" in (e.value.hint or "")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    assert inventory() == before


def test_missing_key_file(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    before = inventory()
    with pytest.raises(ConfigError, match="SSH key file .* does not exist"):
        run_build(options(tmp_path, key_file=str(tmp_path / "nope")))
    assert inventory() == before


def test_public_refused_up_front_when_ebs_encryption_by_default_is_on(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    ec2.enable_ebs_encryption_by_default()
    before = inventory()
    with pytest.raises(AwsError, match="EBS encryption by default is on"):
        run_build(options(tmp_path, public=True))
    assert inventory() == before


def test_unproven_profile_is_refused_unless_allowed(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    proven = tmp_path / "sim-proven.json"
    before = inventory()
    with pytest.raises(ConfigError, match="debian-12 has not been proven by a simulation run") as e:
        run_build(options(tmp_path, allow_unproven=False, proven_path=str(proven)))
    assert "--allow-unproven" in (e.value.hint or "")
    assert inventory() == before
    record_proven(PROFILE, proven)
    result = run_build(options(tmp_path, allow_unproven=False, proven_path=str(proven)))
    assert result.ami_ids[REGION].startswith("ami-")
