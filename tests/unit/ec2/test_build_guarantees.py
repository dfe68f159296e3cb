"""The build's guarantees of issue 14 against moto: the builder terminated by its id, snapshots tagged
at once, ``force`` replacing only after the new image is available (under AWS's one-name rule), the
source image's owner checked, a wide SSH CIDR warned about, the package list in the manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from provision.ec2.plan import BUILD_ID_TAG, BuilderHost, temp_image_name
from provision.exceptions import ConfigError
from provision.image.updates import Package

from .helpers import (
    DEBIAN_OLD,
    NAME,
    OTHER,
    REGION,
    Boom,
    client,
    client_error,
    clients_with,
    ec2_snapshots,
    image_from_instance,
    inventory,
    options,
    run_build,
    snapshots_tagged,
    unique_names,
)

BUILD_ID = "7a7a7a7a-1111-2222-3333-444444444444"


def _calls(log: list[tuple[str, dict[str, Any]]]) -> tuple[str, str, Any]:
    """A hook recording every EC2 operation (name and parameters) in order."""

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        log.append((model.name, dict(params)))

    return ("*", "before-parameter-build.ec2", record)


def _fail_provisioning(host: BuilderHost) -> None:
    raise Boom("ceph-mon did not start")


# --- the builder is terminated by the id the build holds ---------------------------------------------


def test_the_builder_is_terminated_by_its_id_before_anything_is_looked_up(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    hosts: list[BuilderHost] = []

    def provision(host: BuilderHost) -> None:
        hosts.append(host)
        calls.clear()
        raise Boom("ceph-mon did not start")

    with pytest.raises(Boom):
        run_build(options(tmp_path), provision, clients=clients_with(_calls(calls)))
    ops = [op for op, _ in calls]
    first = ops.index("TerminateInstances")
    assert "DescribeInstances" not in ops[:first], ops
    assert calls[first][1] == {"InstanceIds": [hosts[0].instance_id]}
    state = ec2.describe_instances(InstanceIds=[hosts[0].instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state == "terminated"


def test_a_termination_that_cannot_be_confirmed_is_reported_not_raised(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    terminating = {"on": False}

    def note_terminate(params: dict[str, Any], **_: Any) -> None:
        terminating["on"] = True

    def describe_fails_once_terminating(params: dict[str, Any], **_: Any) -> None:
        if terminating["on"]:
            raise client_error("RequestLimitExceeded", "DescribeInstances")

    hooks = [
        ("*", "before-parameter-build.ec2.TerminateInstances", note_terminate),
        ("*", "before-parameter-build.ec2.DescribeInstances", describe_fails_once_terminating),
    ]
    logs: list[str] = []
    hosts: list[BuilderHost] = []
    def provision(host: BuilderHost) -> None:
        hosts.append(host)
        _fail_provisioning(host)

    with pytest.raises(Boom, match="ceph-mon did not start") as e:
        run_build(options(tmp_path), provision, clients=clients_with(*hooks), log=logs.append)
    iid = hosts[0].instance_id
    manual = f"aws ec2 terminate-instances --region {REGION} --instance-ids {iid}"
    (line,) = [ln for ln in logs if "could not remove builder instance" in ln]
    assert f"Termination of {iid} requested but not confirmed" in line and line.endswith(f"remove it with: {manual}")
    assert any(manual in note for note in e.value.__notes__)
    terminating["on"] = False
    assert client(REGION).describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"] == "terminated"


# --- snapshots are tagged with the build id at once --------------------------------------------------


def test_snapshots_are_tagged_before_the_wait_for_the_image(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    seen: dict[str, Any] = {}

    def on_image_created(ami: str, iid: str) -> None:
        # Runs right after create_image returned, before the build waits for "available".
        snaps = ec2_snapshots(ec2, ami)
        tags = [{t["Key"]: t["Value"] for t in s.get("Tags", [])} for s in ec2.describe_snapshots(SnapshotIds=snaps)["Snapshots"]]
        seen.update(snaps=snaps, tags=tags)

    result = run_build(options(tmp_path), on_image_created=on_image_created, build_id=BUILD_ID)
    assert seen["snaps"] and all(t.get(BUILD_ID_TAG) == BUILD_ID for t in seen["tags"])
    assert snapshots_tagged(BUILD_ID)[REGION] == sorted(ec2_snapshots(ec2, result.ami_ids[REGION]))


# --- force: the old image goes only once the new one is available -----------------------------------


def test_force_replaces_only_after_the_new_image_is_available_under_awss_name_rule(
    tmp_path: Path, ec2: Any, ec2_other: Any, source_ami: str
) -> None:
    old = {REGION: image_from_instance(ec2, NAME), OTHER: image_from_instance(ec2_other, NAME)}
    old_snaps = {REGION: ec2_snapshots(ec2, old[REGION]), OTHER: ec2_snapshots(ec2_other, old[OTHER])}
    before = inventory()
    temp = temp_image_name(NAME, BUILD_ID)
    at_deregister: dict[str, list[tuple[str, str]]] = {}

    def deregister_hook(region: str) -> tuple[str, str, Any]:
        def check(params: dict[str, Any], **_: Any) -> None:
            if params["ImageId"] == old[region]:
                images = client(region).describe_images(Owners=["self"], Filters=[{"Name": f"tag:{BUILD_ID_TAG}", "Values": [BUILD_ID]}])
                at_deregister[region] = [(i["Name"], i["State"]) for i in images["Images"]]

        return (region, "before-parameter-build.ec2.DeregisterImage", check)

    clients = clients_with(*unique_names(REGION, OTHER), deregister_hook(REGION), deregister_hook(OTHER))
    result = run_build(options(tmp_path, force=True, regions=[OTHER], public=True), clients=clients, build_id=BUILD_ID)

    # When each old image was deregistered, the build's image under the temporary name was available.
    assert at_deregister == {REGION: [(temp, "available")], OTHER: [(temp, "available")]}
    for region, c in ((REGION, ec2), (OTHER, ec2_other)):
        (image,) = c.describe_images(Owners=["self"])["Images"]
        assert image["ImageId"] == result.ami_ids[region] != old[region] and image["Name"] == NAME
        assert {"Group": "all"} in c.describe_image_attribute(ImageId=image["ImageId"], Attribute="launchPermission")["LaunchPermissions"]
        now = set(inventory()[region]["snapshots"])
        expected = (set(before[region]["snapshots"]) - set(old_snaps[region])) | set(ec2_snapshots(c, image["ImageId"]))
        assert now == expected, "the old and the temporary images' snapshots are gone"
    assert result.leftovers == []


def test_force_without_an_old_image_makes_it_once_under_its_name(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    result = run_build(options(tmp_path, force=True), clients=clients_with(_calls(calls), *unique_names(REGION)))
    assert [p["Name"] for op, p in calls if op == "CreateImage"] == [NAME]
    assert result.timings["replace"] >= 0


def test_the_name_rule_of_the_tests_is_awss(ec2: Any, source_ami: str) -> None:
    """The hook stands in for EC2's InvalidAMIName.Duplicate (moto accepts duplicates)."""
    image_from_instance(ec2, NAME)
    iid = ec2.run_instances(ImageId=DEBIAN_OLD, MinCount=1, MaxCount=1, InstanceType="t3.micro")["Instances"][0]["InstanceId"]
    hooked = clients_with(*unique_names(REGION))(REGION)
    with pytest.raises(Exception, match="InvalidAMIName.Duplicate"):
        hooked.create_image(InstanceId=iid, Name=NAME)


# --- the source image's owner -----------------------------------------------------------------------


@pytest.mark.parametrize("whose", ["someone else's", "this account's"])
def test_a_source_ami_outside_the_publishers_account_is_refused_unless_trusted(
    tmp_path: Path, ec2: Any, source_ami: str, whose: str
) -> None:
    ami = "ami-0bad000000000001" if whose == "someone else's" else image_from_instance(ec2, "my-own-base")
    owner = ec2.describe_images(ImageIds=[ami])["Images"][0]["OwnerId"]
    before = inventory()
    with pytest.raises(ConfigError, match=f"Source AMI {ami} belongs to account {owner}, not to Debian 12 \\(bookworm\\)'s publisher 136693071363") as e:
        run_build(options(tmp_path, source_ami=ami))
    assert "--trust-source-owner" in (e.value.hint or "")
    assert inventory() == before
    assert run_build(options(tmp_path, source_ami=ami, trust_source_owner=True)).source_ami == ami


# --- SSH from a wide CIDR ---------------------------------------------------------------------------------


def test_a_wide_cidr_is_warned_about_on_one_stderr_line(tmp_path: Path, ec2: Any, source_ami: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_build(options(tmp_path, caller_ip=None, allow_cidr="198.51.100.0/24"))  # warn: the default, stderr
    err = capsys.readouterr().err
    assert err == "warning: SSH to the builder is admitted from 198.51.100.0/24 (256 addresses), not from a single address\n"
    warnings: list[str] = []
    run_build(options(tmp_path, ami_name="coa-second"), warn=warnings.append)
    assert warnings == []


def test_the_whole_internet_needs_allow_world(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    before = inventory()
    with pytest.raises(ConfigError, match="whole internet"):
        run_build(options(tmp_path, caller_ip=None, allow_cidr="0.0.0.0/0"))
    assert inventory() == before
    warnings: list[str] = []
    seen: list[Any] = []

    def provision(host: BuilderHost) -> None:
        group = ec2.describe_instances(InstanceIds=[host.instance_id])["Reservations"][0]["Instances"][0]["SecurityGroups"][0]["GroupId"]
        seen.append(ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["IpPermissions"][0]["IpRanges"][0]["CidrIp"])

    run_build(options(tmp_path, caller_ip=None, allow_cidr="0.0.0.0/0", allow_world=True), provision, warn=warnings.append)
    assert seen == ["0.0.0.0/0"]
    assert warnings == ["warning: SSH to the builder is open to the whole internet (0.0.0.0/0) for the length of the build"]


# --- the package list in the manifest ---------------------------------------------------------------------


def test_the_builders_packages_are_in_the_manifest_entry(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    packages = [Package("ceph-mon", "16.2.15+ds-0+deb12u1", "amd64"), Package("openssl", "3.0.13-1~deb12u1", "amd64")]
    result = run_build(options(tmp_path), lambda host: packages)
    (entry,) = json.loads(Path(result.manifest_path).read_text())["builds"]
    assert entry["packages"] == [
        {"name": "ceph-mon", "version": "16.2.15+ds-0+deb12u1", "architecture": "amd64"},
        {"name": "openssl", "version": "3.0.13-1~deb12u1", "architecture": "amd64"},
    ]
    assert result.packages == packages
