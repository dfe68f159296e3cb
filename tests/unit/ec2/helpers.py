"""Shared helpers of the EC2 tests: a small public-image catalogue for moto, sessions and clients,
an inventory of what a build could leave behind, build options, and botocore hooks that inject faults."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import boto3
import botocore.loaders
import botocore.session
from botocore.exceptions import ClientError

from provision.ec2.build import build
from provision.ec2.plan import BUILD_ID_TAG, BuilderHost, BuildOptions, BuildPlan, BuildResult, make_plan
from provision.ec2.shapes import image_snapshot_ids
from provision.ec2.verify import Booted, TestStage
from provision.profiles import DEBIAN_12

REGION = "us-east-1"
OTHER = "eu-west-1"
CALLER = "203.0.113.7"
NAME = "coa-test-image"
PROFILE = DEBIAN_12
REGIONS = ["us-east-1", "eu-west-1", "eu-central-1"]


def catalogue_image(ami_id: str, owner: str, name: str, created: str, arch: str = "x86_64") -> dict[str, Any]:
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
    catalogue_image(DEBIAN_OLD, "136693071363", "debian-12-amd64-20240101-1614", "2024-01-01T10:00:00.000Z"),
    catalogue_image(DEBIAN_NEW, "136693071363", "debian-12-amd64-20240601-1774", "2024-06-01T10:00:00.000Z"),
    catalogue_image("ami-0d1e000000000003", "136693071363", "debian-12-arm64-20240701-1800", "2024-07-01T10:00:00.000Z", "arm64"),
    catalogue_image("ami-0d1e000000000004", "136693071363", "debian-11-amd64-20240801-1900", "2024-08-01T10:00:00.000Z"),
    catalogue_image(
        "ami-0c0a000000000001",
        "099720109477",
        "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20240423",
        "2024-04-23T10:00:00.000Z",
    ),
    # Someone else's image with a Debian name: never picked, it is not from Debian's account.
    catalogue_image("ami-0bad000000000001", "111122223333", "debian-12-amd64-20250101-9999", "2025-01-01T10:00:00.000Z"),
]


class FreshCopies(list[dict[str, Any]]):
    """moto edits the catalogue entries it loads (once per region); hand it fresh copies each time."""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (dict(item) for item in list.__iter__(self))


# botocore parses the (large) EC2 service model once per loader; share one across tests.
LOADER = botocore.loaders.create_loader()
TEST: dict[str, Any] = {"session": None, "clients": {}}


def new_session() -> boto3.session.Session:
    """A boto3 session with its own credential lookup but the shared model loader."""
    core = botocore.session.get_session()
    core.register_component("data_loader", LOADER)
    return boto3.session.Session(botocore_session=core)


def offline_client() -> Any:
    """An EC2 client for botocore's Stubber (fake keys; the Stubber answers every call)."""
    return new_session().client("ec2", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")


def client(region: str) -> Any:
    """The test's plain EC2 client for ``region`` (made once per test)."""
    clients = TEST["clients"]
    if region not in clients:
        clients[region] = (TEST["session"] or new_session()).client("ec2", region_name=region)
    return clients[region]


def image_from_instance(client: Any, name: str) -> str:
    """Make an image owned by the test account (the instance is terminated afterwards)."""
    iid = client.run_instances(ImageId=DEBIAN_OLD, MinCount=1, MaxCount=1, InstanceType="t3.micro")["Instances"][0]["InstanceId"]
    ami = client.create_image(InstanceId=iid, Name=name)["ImageId"]
    client.terminate_instances(InstanceIds=[iid])
    return ami


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


#: What the test instance's console shows after its first boot (the line the instance prints).
TEST_CONSOLE = "[  OK  ] Reached target multi-user.target\nceph-openstack-ami: admin password for https://ec2-x/ (certificate SHA-256 ab:cd): Pa55word\n"


def passing_test_stage(boots: dict[str, int] | None = None) -> TestStage:
    """A test stage whose instances are ready at once, boot anew at each look after a reboot, have
    their own host key and print the password line: the build's orchestration of the stage is
    what is tested (the SSH side runs against the simulation, tests/sim)."""
    count = boots if boots is not None else {}

    def ready(host: BuilderHost) -> Booted:
        count[host.instance_id] = count.get(host.instance_id, 0) + 1
        return Booted(f"{host.instance_id} boot {count[host.instance_id]}", f"ssh-ed25519 key-of-{host.instance_id}")

    return TestStage(ready=ready, host_key=lambda host: f"ssh-ed25519 key-of-{host.instance_id}", console=lambda iid: TEST_CONSOLE)


def run_build(opts: BuildOptions, provision: Callable[[BuilderHost], Any] | None = None, **kwargs: Any) -> BuildResult:
    kwargs.setdefault("session", TEST["session"])
    kwargs.setdefault("test_stage", passing_test_stage())
    kwargs.setdefault("ssh_probe", lambda host: True)
    kwargs.setdefault("log", lambda line: None)
    kwargs.setdefault("sleep", lambda s: None)
    return build(opts, provision or (lambda host: None), **kwargs)


class Boom(RuntimeError):
    """The provisioning callback failed."""


def client_error(code: str, operation: str, message: str = "injected") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


def clients_with(*hooks: tuple[str, str, Callable[..., Any]]) -> Callable[[str], Any]:
    """A client factory whose clients run ``(region or '*', event, handler)`` hooks.

    The clients are the test's own (:func:`client`; making a botocore client costs ~0.1 s),
    with the hooks registered the first time the build asks for a region's client.
    """
    hooked: set[str] = set()

    def factory(region: str) -> Any:
        c = client(region)
        if region not in hooked:
            hooked.add(region)
            for where, event, handler in hooks:
                if where in ("*", region):
                    c.meta.events.register(event, handler)
        return c

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


def plan_for(tmp_path: Path, **overrides: Any) -> BuildPlan:
    """The plan of the test options (fixed build id and time)."""
    return make_plan(options(tmp_path, **overrides), available_regions=REGIONS, build_id="11111111-2222-3333-4444-555555555555", now=0)


def ec2_snapshots(client: Any, ami: str) -> list[str]:
    image = client.describe_images(ImageIds=[ami])["Images"][0]
    return image_snapshot_ids(image)


def unique_names(*regions: str) -> list[tuple[str, str, Callable[..., Any]]]:
    """AWS's rule that moto lacks: one registered image per name in an account and region.

    Hooks that refuse ``create_image``/``copy_image``/``register_image`` of a name already
    taken with ``InvalidAMIName.Duplicate``, as EC2 does (looked up with the test's own client).
    """
    hooks: list[tuple[str, str, Callable[..., Any]]] = []
    for region in regions:

        def refuse_taken(params: dict[str, Any], region: str = region, **_: Any) -> None:
            taken = [
                i["ImageId"]
                for i in client(region).describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [params["Name"]]}])["Images"]
                if i.get("State") != "deregistered"
            ]
            if taken:
                raise client_error("InvalidAMIName.Duplicate", "CreateImage", f"AMI name {params['Name']} is already in use by AMI {taken[0]}")

        hooks += [(region, f"before-parameter-build.ec2.{op}", refuse_taken) for op in ("CreateImage", "CopyImage", "RegisterImage")]
    return hooks


def snapshots_tagged(build_id: str, regions: tuple[str, ...] = (REGION, OTHER)) -> dict[str, list[str]]:
    """Region -> snapshots tagged with ``build_id`` (what cleanup looks for)."""
    return {
        region: sorted(
            s["SnapshotId"]
            for s in client(region).describe_snapshots(OwnerIds=["self"], Filters=[{"Name": f"tag:{BUILD_ID_TAG}", "Values": [build_id]}])[
                "Snapshots"
            ]
        )
        for region in regions
    }
