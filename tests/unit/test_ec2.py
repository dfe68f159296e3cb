"""The EC2 build lifecycle against moto (offline): stages, failures, cleanup, waits, checks."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import boto3
import botocore.loaders
import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

from provision import ec2 as ec2mod
from provision.ec2 import (
    BUILD_ID_TAG,
    METADATA_OPTIONS,
    ROLE_TAG,
    STAGES,
    BuilderHost,
    BuildOptions,
    Cleanup,
    build,
    check_can_publish,
    delete_image,
    find_source_image,
    ingress_permissions,
    launch_request,
    make_plan,
    manifest_entry,
    merge_manifest,
    newest_image,
    ssh_cidr,
    tag_list,
    validate_ami_id,
    validate_ami_name,
    wait_for,
    wait_image_available,
    wait_instance,
)
from provision.exceptions import AwsError, ConfigError, WaitTimeout
from provision.profiles import DEBIAN_12, UBUNTU_24_04, record_proven

REGION = "us-east-1"
OTHER = "eu-west-1"
CALLER = "203.0.113.7"
NAME = "coa-test-image"
PROFILE = DEBIAN_12
REGIONS = ["us-east-1", "eu-west-1", "eu-central-1"]


# --- fixtures and helpers ------------------------------------------------------------------


def _catalogue_image(ami_id: str, owner: str, name: str, created: str, arch: str = "x86_64") -> dict[str, Any]:
    return {
        "ami_id": ami_id,
        "state": "available",
        "public": True,
        "owner_id": owner,
        "name": name,
        "description": name,
        "architecture": arch,
        "virtualization_type": "hvm",
        "root_device_type": "ebs",
        "root_device_name": "/dev/xvda",
        "image_type": "machine",
        "platform": None,
        "hypervisor": "xen",
        "creation_date": created,
    }


DEBIAN_OLD = "ami-0d1e000000000001"
DEBIAN_NEW = "ami-0d1e000000000002"
CATALOGUE = [
    _catalogue_image(DEBIAN_OLD, "136693071363", "debian-12-amd64-20240101-1614", "2024-01-01T10:00:00.000Z"),
    _catalogue_image(DEBIAN_NEW, "136693071363", "debian-12-amd64-20240601-1774", "2024-06-01T10:00:00.000Z"),
    _catalogue_image("ami-0d1e000000000003", "136693071363", "debian-12-arm64-20240701-1800", "2024-07-01T10:00:00.000Z", "arm64"),
    _catalogue_image("ami-0d1e000000000004", "136693071363", "debian-11-amd64-20240801-1900", "2024-08-01T10:00:00.000Z"),
    _catalogue_image(
        "ami-0c0a000000000001",
        "099720109477",
        "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20240423",
        "2024-04-23T10:00:00.000Z",
    ),
    # Someone else's image with a Debian name: never picked, it is not from Debian's account.
    _catalogue_image("ami-0bad000000000001", "111122223333", "debian-12-amd64-20250101-9999", "2025-01-01T10:00:00.000Z"),
]


class _FreshCopies(list):  # type: ignore[type-arg]
    """moto edits the catalogue entries it loads (once per region); hand it fresh copies each time."""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (dict(item) for item in list.__iter__(self))


@pytest.fixture
def aws(aws_credentials: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A moto EC2 whose public images are the small catalogue above; clients are created inside it.

    moto loads ~1,200 default images per region (seconds per test). Setting
    MOTO_AMIS_PATH makes it load only ``moto.ec2.models.amis.AMIS``, which is
    replaced for this test only.
    """
    import moto.ec2.models.amis as moto_amis

    monkeypatch.setenv("MOTO_AMIS_PATH", "(catalogue set by the test)")
    monkeypatch.setattr(moto_amis, "AMIS", _FreshCopies(CATALOGUE))
    with mock_aws():
        yield


# botocore parses the (large) EC2 service model once per loader; share one across tests.
_LOADER = botocore.loaders.create_loader()
_TEST: dict[str, Any] = {"session": None, "clients": {}}


def new_session() -> boto3.session.Session:
    """A boto3 session with its own credential lookup but the shared model loader."""
    core = botocore.session.get_session()
    core.register_component("data_loader", _LOADER)
    return boto3.session.Session(botocore_session=core)


@pytest.fixture
def session(aws: None) -> Iterator[boto3.session.Session]:
    """The test's boto3 session; builds and helpers use it unless told otherwise."""
    _TEST["session"], _TEST["clients"] = new_session(), {}
    yield _TEST["session"]
    _TEST["session"], _TEST["clients"] = None, {}


def offline_client() -> Any:
    """An EC2 client for botocore's Stubber (fake keys; the Stubber answers every call)."""
    return new_session().client("ec2", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")


def client(region: str) -> Any:
    """The test's plain EC2 client for ``region`` (made once per test)."""
    clients = _TEST["clients"]
    if region not in clients:
        clients[region] = (_TEST["session"] or new_session()).client("ec2", region_name=region)
    return clients[region]


@pytest.fixture
def ec2(session: boto3.session.Session) -> Any:
    return client(REGION)


@pytest.fixture
def ec2_other(session: boto3.session.Session) -> Any:
    return client(OTHER)


def _image_from_instance(client: Any, name: str) -> str:
    """Make an image owned by the test account (the instance is terminated afterwards)."""
    iid = client.run_instances(ImageId=DEBIAN_OLD, MinCount=1, MaxCount=1, InstanceType="t3.micro")["Instances"][0]["InstanceId"]
    ami = client.create_image(InstanceId=iid, Name=name)["ImageId"]
    client.terminate_instances(InstanceIds=[iid])
    return ami


@pytest.fixture
def source_ami(ec2: Any) -> str:
    """The image the Debian profile must pick: Debian's newest amd64 bookworm image."""
    return DEBIAN_NEW


def inventory(regions: tuple[str, ...] = (REGION, OTHER)) -> dict[str, Any]:
    """Everything of the test account that a build could leave behind."""
    out: dict[str, Any] = {}
    for region in regions:
        c = client(region)
        live = [
            i["InstanceId"] for r in c.describe_instances()["Reservations"] for i in r["Instances"] if i["State"]["Name"] != "terminated"
        ]
        out[region] = {
            "instances": sorted(live),
            "key_pairs": sorted(k["KeyName"] for k in c.describe_key_pairs()["KeyPairs"]),
            "security_groups": sorted(
                g["GroupName"] for g in c.describe_security_groups()["SecurityGroups"] if g["GroupName"] != "default"
            ),
            "images": sorted(i["ImageId"] for i in c.describe_images(Owners=["self"])["Images"]),
            "snapshots": sorted(
                s["SnapshotId"] for s in c.describe_snapshots(Filters=[{"Name": "owner-id", "Values": ["123456789012"]}])["Snapshots"]
            ),
            "volumes": sorted(v["VolumeId"] for v in c.describe_volumes()["Volumes"]),
        }
    return out


def options(tmp_path: Path, **overrides: Any) -> BuildOptions:
    base: dict[str, Any] = {
        "region": REGION,
        "profile": PROFILE,
        "ami_name": NAME,
        "caller_ip": CALLER,
        "wait_delay": 0,
        "wait_attempts": 3,
        "ssh_delay": 0,
        "ssh_attempts": 2,
        "allow_unproven": True,
        "manifest_path": str(tmp_path / "build" / "manifest.json"),
    }
    base.update(overrides)
    return BuildOptions(**base)


def run_build(opts: BuildOptions, provision: Callable[[BuilderHost], None] | None = None, **kwargs: Any) -> ec2mod.BuildResult:
    kwargs.setdefault("session", _TEST["session"])
    kwargs.setdefault("ssh_probe", lambda host: True)
    kwargs.setdefault("log", lambda line: None)
    kwargs.setdefault("sleep", lambda s: None)
    return build(opts, provision or (lambda host: None), **kwargs)


def client_error(code: str, operation: str, message: str = "injected") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


def clients_with(*hooks: tuple[str, str, Callable[..., Any]]) -> Callable[[str], Any]:
    """A client factory whose clients run ``(region or '*', event, handler)`` hooks."""
    cache: dict[str, Any] = {}

    def factory(region: str) -> Any:
        if region not in cache:
            c = (_TEST["session"] or new_session()).client("ec2", region_name=region)
            for where, event, handler in hooks:
                if where in ("*", region):
                    c.meta.events.register(event, handler)
            cache[region] = c
        return cache[region]

    return factory


def fail_on(
    operation: str, code: str = "InternalError", region: str = "*", when: Callable[[dict[str, Any]], bool] | None = None
) -> tuple[str, str, Callable[..., Any]]:
    """A hook that makes ``operation`` fail with ``code`` (optionally only when ``when(params)``)."""

    def handler(params: dict[str, Any], **_: Any) -> None:
        if when is None or when(params):
            raise client_error(code, operation)

    return (region, f"before-parameter-build.ec2.{operation}", handler)


def after(operation: str, mutate: Callable[[dict[str, Any]], None], region: str = "*") -> tuple[str, str, Callable[..., Any]]:
    """A hook that rewrites the parsed response of ``operation``."""

    def handler(parsed: dict[str, Any], **_: Any) -> None:
        mutate(parsed)

    return (region, f"after-call.ec2.{operation}", handler)


# --- pure helpers -----------------------------------------------------------------------------


@pytest.mark.parametrize("ami_id", ["ami-12345678", "ami-0123456789abcdef0", "ami-0123456789abcdef"])
def test_valid_ami_ids(ami_id: str) -> None:
    assert validate_ami_id(ami_id) == ami_id


@pytest.mark.parametrize(
    "ami_id", ["", "ami-1234567", "ami-0123456789abcdef01", "AMI-12345678", "ami-1234567g", "i-12345678", " ami-12345678"]
)
def test_malformed_ami_ids(ami_id: str) -> None:
    with pytest.raises(ConfigError, match="Malformed AMI id"):
        validate_ami_id(ami_id)


@pytest.mark.parametrize(
    ("name", "ok"),
    [("abc", True), ("ceph (demo) [v1] 1.0/x-y_z'@", True), ("ab", False), ("x" * 129, False), ("bad*name", False), ("tab\tname", False)],
)
def test_ami_names(name: str, ok: bool) -> None:
    if ok:
        assert validate_ami_name(name) == name
    else:
        with pytest.raises(ConfigError, match="Invalid AMI name"):
            validate_ami_name(name)


@pytest.mark.parametrize(
    ("caller", "cidr", "want"),
    [
        ("203.0.113.7", None, "203.0.113.7/32"),
        ("2001:db8::7", None, "2001:db8::7/128"),
        ("203.0.113.7", "198.51.100.0/24", "198.51.100.0/24"),
        (None, "0.0.0.0/0", "0.0.0.0/0"),
    ],
)
def test_ssh_cidr(caller: str | None, cidr: str | None, want: str) -> None:
    assert ssh_cidr(caller, cidr) == want


@pytest.mark.parametrize(
    ("caller", "cidr"), [(None, None), ("", None), ("not-an-ip", None), ("203.0.113.7", "198.51.100.1/24"), (None, "nonsense")]
)
def test_ssh_cidr_refuses(caller: str | None, cidr: str | None) -> None:
    with pytest.raises(ConfigError):
        ssh_cidr(caller, cidr)


def test_ingress_is_ssh_only() -> None:
    assert ingress_permissions("203.0.113.7/32") == [
        {
            "IpProtocol": "tcp",
            "FromPort": 22,
            "ToPort": 22,
            "IpRanges": [{"CidrIp": "203.0.113.7/32", "Description": "SSH to the ceph-openstack-ami builder"}],
        }
    ]
    v6 = ingress_permissions("2001:db8::7/128")[0]
    assert v6["Ipv6Ranges"][0]["CidrIpv6"] == "2001:db8::7/128" and "IpRanges" not in v6


def test_tag_list_is_sorted_pairs() -> None:
    assert tag_list({"b": "2", "a": "1"}) == [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]


def test_newest_image_by_creation_date() -> None:
    images = [
        {"ImageId": "ami-1", "Name": "debian-12-amd64-20240101-1", "CreationDate": "2024-01-01T00:00:00.000Z"},
        {"ImageId": "ami-3", "Name": "debian-12-amd64-20240301-3", "CreationDate": "2024-03-01T00:00:00.000Z"},
        {"ImageId": "ami-2", "Name": "debian-12-amd64-20240201-2", "CreationDate": "2024-02-01T00:00:00.000Z"},
    ]
    assert newest_image(images)["ImageId"] == "ami-3"  # type: ignore[index]
    assert newest_image([]) is None


def _plan(tmp_path: Path, **overrides: Any) -> ec2mod.BuildPlan:
    return make_plan(options(tmp_path, **overrides), available_regions=REGIONS, build_id="11111111-2222-3333-4444-555555555555", now=0)


def test_make_plan_resolves_defaults(tmp_path: Path) -> None:
    plan = make_plan(BuildOptions(caller_ip=CALLER), available_regions=REGIONS, build_id="b", now=1_700_000_000)
    assert plan.instance_type == "m1.xlarge"
    assert plan.region == "us-east-1"
    assert plan.profile is DEBIAN_12
    assert plan.ami_name == "ceph-openstack-debian-12-20231114-221320"
    assert plan.ssh_cidr == "203.0.113.7/32"
    assert plan.on_error == "cleanup" and not plan.public and not plan.force


def test_make_plan_dedupes_copy_regions(tmp_path: Path) -> None:
    plan = _plan(tmp_path, regions=["eu-west-1", "us-east-1", "eu-west-1", "eu-central-1"])
    assert plan.copy_regions == ("eu-west-1", "eu-central-1")
    assert plan.regions == ("us-east-1", "eu-west-1", "eu-central-1")


def test_make_plan_takes_regions_as_a_comma_separated_string(tmp_path: Path) -> None:
    assert _plan(tmp_path, regions="eu-west-1, eu-central-1,").copy_regions == ("eu-west-1", "eu-central-1")


def test_options_from_settings() -> None:
    from provision.settings import Settings

    settings = Settings().replace(instance_type="m5.xlarge", region="eu-west-1", wait_attempts=7)
    opts = BuildOptions.from_settings(settings, public=True, ami_name=None)
    assert (opts.instance_type, opts.region, opts.wait_attempts, opts.public, opts.ami_name) == ("m5.xlarge", "eu-west-1", 7, True, None)
    assert opts.profile == "debian-12"


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"region": "mars-1"}, "Unknown EC2 region 'mars-1'"),
        ({"regions": ["eu-west-1", "moon-2"]}, "Unknown EC2 region 'moon-2'"),
        ({"on_error": "ignore"}, "Unknown on_error"),
        ({"source_ami": "ami-xyz"}, "Malformed AMI id"),
        ({"ami_name": "x"}, "Invalid AMI name"),
        ({"caller_ip": None}, "No address to admit SSH from"),
        ({"key_file": "/nonexistent/id_ed25519"}, "does not exist"),
        ({"profile": "centos-7"}, "Unknown profile"),
        ({"wait_attempts": 0}, "at least 1"),
    ],
)
def test_make_plan_refuses(tmp_path: Path, overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _plan(tmp_path, **overrides)


def test_launch_request_requires_imdsv2_and_tags(tmp_path: Path) -> None:
    plan = _plan(tmp_path, root_volume_gib=30)
    image = {
        "ImageId": "ami-12345678",
        "RootDeviceName": "/dev/xvda",
        "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}],
    }
    req = launch_request(plan, image, "kp", "sg-1")
    assert req["MetadataOptions"] == {"HttpTokens": "required", "HttpPutResponseHopLimit": 2, "HttpEndpoint": "enabled"}
    assert req["InstanceType"] == "m1.xlarge" and req["MinCount"] == req["MaxCount"] == 1
    assert req["KeyName"] == "kp" and req["SecurityGroupIds"] == ["sg-1"]
    assert req["BlockDeviceMappings"] == [
        {"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 30, "VolumeType": "gp3", "DeleteOnTermination": True}}
    ]
    specs = {s["ResourceType"]: {t["Key"]: t["Value"] for t in s["Tags"]} for s in req["TagSpecifications"]}
    assert set(specs) == {"instance", "volume"}
    assert specs["instance"][BUILD_ID_TAG] == plan.build_id
    assert specs["instance"][ROLE_TAG] == "builder"
    assert specs["instance"]["Name"] == f"{NAME}-builder"
    # A source image bigger than asked for keeps its size.
    big = {**image, "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 50}}]}
    assert launch_request(plan, big, "kp", "sg-1")["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == 50


def test_manifest_has_packers_shape_and_appends(tmp_path: Path) -> None:
    plan = _plan(tmp_path, regions=["eu-west-1"], public=True, custom_data={"git_sha": "abc123"})
    entry = manifest_entry(plan, {"us-east-1": "ami-11111111", "eu-west-1": "ami-22222222"}, "ami-00000000", 1_700_000_000)
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
            "git_sha": "abc123",
        },
    }
    first = merge_manifest(None, entry)
    assert first == {"builds": [entry], "last_run_uuid": plan.build_id}
    second_entry = {**entry, "packer_run_uuid": "other"}
    second = merge_manifest(first, second_entry)
    assert [b["packer_run_uuid"] for b in second["builds"]] == [plan.build_id, "other"]
    assert second["last_run_uuid"] == "other"


# --- the cleanup registry -----------------------------------------------------------------------


def test_cleanup_runs_newest_first_keeps_going_and_reports() -> None:
    done: list[str] = []
    c = Cleanup(log=lambda s: None)
    c.add("first", lambda: done.append("first"))
    h = c.add("kept", lambda: done.append("kept"))
    c.add("broken", lambda: (_ for _ in ()).throw(RuntimeError("boom")), "rm broken")
    c.add("last", lambda: done.append("last"))
    c.keep(h)
    assert [label for label, _ in c.pending()] == ["last", "broken", "first"]
    failures = c.run()
    assert done == ["last", "first"]
    assert failures == ["broken: boom; remove it with: rm broken"]
    assert len(c) == 0 and c.run() == []


def test_cleanup_survives_ctrl_c_in_one_action() -> None:
    done: list[str] = []

    def interrupted() -> None:
        raise KeyboardInterrupt

    c = Cleanup(log=lambda s: None)
    c.add("a", lambda: done.append("a"))
    c.add("b", interrupted)
    assert c.run() == ["b: interrupted"]
    assert done == ["a"]


def test_removing_what_is_already_gone_is_success(ec2: Any) -> None:
    ami = _image_from_instance(ec2, "gone-twice")
    snaps = ec2_snapshots(ec2, ami)
    assert delete_image(ec2, ami, REGION) is True
    assert delete_image(ec2, ami, REGION, snaps) is False
    assert delete_image(ec2, "ami-12345678", REGION, ["snap-12345678"]) is False
    ec2mod.terminate_instances(ec2, ["i-1234567890abcdef0"], REGION, delay=0, attempts=1)
    ec2mod.delete_security_group(ec2, "sg-12345678", REGION, delay=0, attempts=1)


def ec2_snapshots(client: Any, ami: str) -> list[str]:
    image = client.describe_images(ImageIds=[ami])["Images"][0]
    return ec2mod.image_snapshot_ids(image)


# --- waits --------------------------------------------------------------------------------------


def test_wait_for_times_out_naming_the_resource_and_last_state() -> None:
    slept: list[float] = []
    states = iter([("pending", ""), ("pending", ""), ("pending", "copying")])
    with pytest.raises(WaitTimeout) as e:
        wait_for(
            lambda: next(states), resource="image ami-12345678 in us-east-1", want="available", delay=7, attempts=3, sleep=slept.append
        )
    assert "image ami-12345678 in us-east-1" in e.value.message
    assert "last state 'pending' (copying)" in e.value.message
    assert "3 checks 7s apart" in e.value.message
    assert slept == [7, 7]


def test_wait_for_fails_at_once_on_a_hopeless_state() -> None:
    states = iter([("pending", ""), ("failed", "snapshot error")])
    with pytest.raises(AwsError, match=r"image ami-1 is 'failed' \(snapshot error\)") as e:
        wait_for(
            lambda: next(states), resource="image ami-1", want="available", fail={"failed"}, delay=0, attempts=10, sleep=lambda s: None
        )
    assert not isinstance(e.value, WaitTimeout)


def test_wait_image_available_with_a_stubbed_describe() -> None:
    stubbed = offline_client()
    with Stubber(stubbed) as stub:
        for _ in range(4):
            stub.add_response(
                "describe_images", {"Images": [{"ImageId": "ami-12345678", "State": "pending"}]}, {"ImageIds": ["ami-12345678"]}
            )
        with pytest.raises(WaitTimeout) as e:
            wait_image_available(stubbed, "ami-12345678", region=REGION, delay=0, attempts=4, sleep=lambda s: None)
        stub.assert_no_pending_responses()
    assert "image ami-12345678 in us-east-1" in e.value.message and "'pending'" in e.value.message


def test_wait_instance_running_refuses_a_terminated_instance() -> None:
    stubbed = offline_client()
    reply = {
        "Reservations": [
            {
                "Instances": [
                    {
                        "InstanceId": "i-12345678",
                        "State": {"Name": "terminated", "Code": 48},
                        "StateReason": {"Code": "x", "Message": "Server.InternalError"},
                    }
                ]
            }
        ]
    }
    with Stubber(stubbed) as stub:
        stub.add_response("describe_instances", reply, {"InstanceIds": ["i-12345678"]})
        with pytest.raises(AwsError, match="instance i-12345678 in us-east-1 is 'terminated' \\(Server.InternalError\\)"):
            wait_instance(stubbed, "i-12345678", "running", region=REGION, delay=0, attempts=5, sleep=lambda s: None)


def test_terminate_waits_until_terminated() -> None:
    stubbed = offline_client()

    def reply(state: str) -> dict[str, Any]:
        return {"Reservations": [{"Instances": [{"InstanceId": "i-12345678", "State": {"Name": state, "Code": 0}}]}]}

    slept: list[float] = []
    with Stubber(stubbed) as stub:
        stub.add_response("terminate_instances", {}, {"InstanceIds": ["i-12345678"]})
        for state in ("shutting-down", "shutting-down", "terminated"):
            stub.add_response("describe_instances", reply(state), {"InstanceIds": ["i-12345678"]})
        ec2mod.terminate_instances(stubbed, ["i-12345678"], REGION, delay=2, attempts=5, sleep=slept.append)
        stub.assert_no_pending_responses()
    assert slept == [2, 2]


def test_security_group_still_in_use_is_retried() -> None:
    stubbed = offline_client()
    with Stubber(stubbed) as stub:
        stub.add_client_error("delete_security_group", "DependencyViolation", "in use")
        stub.add_response("delete_security_group", {})
        ec2mod.delete_security_group(stubbed, "sg-12345678", REGION, delay=0, attempts=3, sleep=lambda s: None)
        stub.assert_no_pending_responses()


# --- publishability (block public access: moto cannot tell; Stubber gives both answers) -------------


def _stubbed(bpa: str | None, ebs_default: bool) -> tuple[Any, Stubber]:
    stubbed = offline_client()
    stub = Stubber(stubbed)
    if bpa is None:
        stub.add_client_error("get_image_block_public_access_state", "InvalidAction", "not supported")
    else:
        stub.add_response("get_image_block_public_access_state", {"ImageBlockPublicAccessState": bpa})
    stub.add_response("get_ebs_encryption_by_default", {"EbsEncryptionByDefault": ebs_default})
    return stubbed, stub


def test_publish_refused_when_block_public_access_is_on() -> None:
    stubbed = offline_client()
    with Stubber(stubbed) as stub:
        stub.add_response("get_image_block_public_access_state", {"ImageBlockPublicAccessState": "block-new-sharing"})
        with pytest.raises(AwsError, match="block public access is 'block-new-sharing'") as e:
            check_can_publish(stubbed, REGION, lambda s: None)
    assert "disable-image-block-public-access" in (e.value.hint or "")


@pytest.mark.parametrize("bpa", ["unblocked", None])
def test_publish_allowed_when_unblocked_or_unknown(bpa: str | None) -> None:
    logs: list[str] = []
    stubbed, stub = _stubbed(bpa, ebs_default=False)
    with stub:
        check_can_publish(stubbed, REGION, logs.append)
        stub.assert_no_pending_responses()
    assert any("cannot tell" in line for line in logs) == (bpa is None)


def test_publish_refused_when_ebs_encryption_by_default_is_on() -> None:
    stubbed, stub = _stubbed("unblocked", ebs_default=True)
    with stub, pytest.raises(AwsError, match="EBS encryption by default is on"):
        check_can_publish(stubbed, REGION, lambda s: None)


# --- source images ---------------------------------------------------------------------------------


def test_find_source_image_takes_the_publishers_newest(ec2: Any) -> None:
    image = find_source_image(ec2, DEBIAN_12, REGION)
    # Not the newer arm64 image, not debian-11, not a look-alike from another account.
    assert image["ImageId"] == DEBIAN_NEW
    assert find_source_image(ec2, UBUNTU_24_04, REGION)["ImageId"] == "ami-0c0a000000000001"
    nothing = dataclasses.replace(UBUNTU_24_04, source_name_pattern="ubuntu/images/hvm-ssd-gp3/ubuntu-plucky-*")
    with pytest.raises(ConfigError, match="No Ubuntu 24.04 LTS \\(noble\\) image named .*ubuntu-plucky"):
        find_source_image(ec2, nothing, REGION)


def test_explicit_source_ami_must_exist_and_match_the_architecture(ec2: Any) -> None:
    assert ec2mod.describe_source_image(ec2, DEBIAN_OLD, REGION, DEBIAN_12)["ImageId"] == DEBIAN_OLD
    with pytest.raises(ConfigError, match="is arm64, but profile debian-12 is x86_64"):
        ec2mod.describe_source_image(ec2, "ami-0d1e000000000003", REGION, DEBIAN_12)
    with pytest.raises(ConfigError, match="does not exist in us-east-1"):
        ec2mod.describe_source_image(ec2, "ami-0123456789abcdef0", REGION, DEBIAN_12)


# --- the whole build ---------------------------------------------------------------------------------


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
        snaps = ec2mod.image_snapshot_ids(image)
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


def test_a_users_key_file_becomes_the_key_pair(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = tmp_path / "id_ed25519"
    key.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
    )
    key.chmod(0o600)
    seen: list[tuple[str, list[str]]] = []

    def provision(host: BuilderHost) -> None:
        seen.append((host.key_path, [k["KeyType"] for k in ec2.describe_key_pairs()["KeyPairs"]]))

    run_build(options(tmp_path, key_file=str(key)), provision)
    assert seen == [(str(key), ["ed25519"])]
    assert key.exists(), "the user's own key is never removed"
    assert ec2.describe_key_pairs()["KeyPairs"] == []


# --- failures at each stage leave nothing behind ------------------------------------------------------


def _stuck_running(parsed: dict[str, Any]) -> None:
    for r in parsed.get("Reservations", []):
        for i in r.get("Instances", []):
            if i["State"]["Name"] == "running":
                i["State"] = {"Code": 0, "Name": "pending"}


def _stuck_image(parsed: dict[str, Any]) -> None:
    for i in parsed.get("Images", []):
        if i.get("Name") == NAME:
            i["State"] = "pending"


def _encrypted(parsed: dict[str, Any]) -> None:
    for s in parsed.get("Snapshots", []):
        s["Encrypted"] = True


class Boom(RuntimeError):
    """The provisioning callback failed."""


def _raise(exc: BaseException) -> Callable[..., None]:
    def f(*_: Any) -> None:
        raise exc

    return f


def interrupted_after(operation: str, region: str = "*") -> tuple[str, str, Callable[..., Any]]:
    """A hook that lets ``operation`` succeed in moto, then raises Ctrl-C before the caller sees the reply."""

    def handler(**_: Any) -> None:
        raise KeyboardInterrupt

    return (region, f"after-call.ec2.{operation}", handler)


FAILURES: dict[str, dict[str, Any]] = {
    "launch: run_instances refused": {
        "hooks": [fail_on("RunInstances", "InsufficientInstanceCapacity")],
        "error": AwsError,
        "match": "Failed to launch the builder",
    },
    "launch: key pair refused": {
        "hooks": [fail_on("ImportKeyPair", "UnauthorizedOperation")],
        "error": AwsError,
        "match": "Failed to import key pair",
    },
    "launch: Ctrl-C while run_instances is in flight": {
        "hooks": [interrupted_after("RunInstances")],
        "error": KeyboardInterrupt,
        "match": None,
    },
    "launch: never running": {"hooks": [after("DescribeInstances", _stuck_running)], "error": WaitTimeout, "match": "last state 'pending'"},
    "ssh wait: never answers": {"probe": lambda host: False, "error": WaitTimeout, "match": "SSH on builder i-"},
    "provision: callback raises": {"provision": _raise(Boom("apt-get failed")), "error": Boom, "match": "apt-get failed"},
    "provision: Ctrl-C": {"provision": _raise(KeyboardInterrupt()), "error": KeyboardInterrupt, "match": None},
    "stop: refused": {
        "hooks": [fail_on("StopInstances", "IncorrectInstanceState")],
        "error": AwsError,
        "match": "Failed to stop the builder",
    },
    "create_image: refused": {
        "hooks": [fail_on("CreateImage", "InvalidParameterValue")],
        "error": AwsError,
        "match": "Failed to create image",
    },
    "create_image: Ctrl-C while create_image is in flight": {
        "hooks": [interrupted_after("CreateImage")],
        "error": KeyboardInterrupt,
        "match": None,
    },
    "create_image: hook raises": {"on_image_created": _raise(Boom("docker commit failed")), "error": Boom, "match": "docker commit"},
    "create_image: never available": {
        "hooks": [after("DescribeImages", _stuck_image)],
        "error": WaitTimeout,
        "match": "last state 'pending'",
    },
    "create_image: snapshot tags refused": {
        "hooks": [fail_on("CreateTags", "RequestLimitExceeded")],
        "error": AwsError,
        "match": "Failed to tag",
    },
    "publish: encrypted snapshots": {
        "public": True,
        "hooks": [after("DescribeSnapshots", _encrypted)],
        "error": AwsError,
        "match": "Refusing to publish .* encrypted",
    },
    "publish: refused": {
        "public": True,
        "hooks": [fail_on("ModifyImageAttribute", "OperationNotPermitted", when=lambda p: "LaunchPermission" in p)],
        "error": AwsError,
        "match": "Failed to make ami-",
    },
    "copy: refused": {
        "regions": [OTHER],
        "hooks": [fail_on("CopyImage", "InvalidRegion", region=OTHER)],
        "error": AwsError,
        "match": "Failed to copy ami-",
    },
    "copy: made, then never available": {
        "regions": [OTHER],
        "hooks": [after("DescribeImages", _stuck_image, region=OTHER)],
        "error": WaitTimeout,
        "match": f"in {OTHER}",
    },
    "copy: made, then publish refused": {
        "regions": [OTHER],
        "public": True,
        "hooks": [fail_on("ModifyImageAttribute", "OperationNotPermitted", region=OTHER, when=lambda p: "LaunchPermission" in p)],
        "error": AwsError,
        "match": f"public in {OTHER}",
    },
}


@pytest.mark.parametrize("case", list(FAILURES), ids=list(FAILURES))
def test_failure_at_each_stage_leaves_nothing_behind(
    case: str, tmp_path: Path, ec2: Any, ec2_other: Any, source_ami: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = FAILURES[case]
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    before = inventory()
    keys: list[str] = []
    provision = spec.get("provision") or (lambda host: None)

    def tracking(host: BuilderHost) -> None:
        keys.append(host.key_path)
        provision(host)

    opts = options(tmp_path, public=spec.get("public", False), regions=spec.get("regions", []))
    with pytest.raises(spec["error"], match=spec["match"]):
        run_build(
            opts,
            tracking,
            clients=clients_with(*spec.get("hooks", [])),
            ssh_probe=spec.get("probe", lambda host: True),
            on_image_created=spec.get("on_image_created"),
        )
    assert inventory() == before
    assert not (tmp_path / "build" / "manifest.json").exists()
    assert list(temp.iterdir()) == [], "the temporary key directory is removed"
    for key in keys:
        assert not os.path.exists(key)


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
        import shutil

        shutil.rmtree(Path(host.key_path).parent, ignore_errors=True)


# --- names: collisions and force ------------------------------------------------------------------------


def test_existing_name_is_refused_before_anything_is_made(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    old = _image_from_instance(ec2, NAME)
    before = inventory()
    with pytest.raises(ConfigError, match=f"named '{NAME}' already exists in {REGION} \\({old}\\)"):
        run_build(options(tmp_path))
    assert inventory() == before


def test_existing_name_in_a_copy_region_is_refused(tmp_path: Path, ec2: Any, ec2_other: Any, source_ami: str) -> None:
    _image_from_instance(ec2_other, NAME)
    before = inventory()
    with pytest.raises(ConfigError, match=f"already exists in {OTHER}"):
        run_build(options(tmp_path, regions=[OTHER]))
    assert inventory() == before


def test_force_replaces_the_old_image_and_its_snapshots(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    old = _image_from_instance(ec2, NAME)
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


def test_no_credentials_mid_call_is_one_line() -> None:
    from botocore.exceptions import NoCredentialsError

    err = ec2mod.aws_error("launch the builder", NoCredentialsError())
    assert err.message == "Failed to launch the builder: no AWS credentials found"
    assert "aws configure" in (err.hint or "")


def test_client_errors_become_one_line_with_a_hint() -> None:
    err = ec2mod.aws_error("launch the builder", client_error("UnauthorizedOperation", "RunInstances", "You are not authorized"))
    assert err.message == "Failed to launch the builder: UnauthorizedOperation: You are not authorized"
    assert "ec2:RunInstances" in (err.hint or "")


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
