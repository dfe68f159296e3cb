"""The sim daemon's EC2 side, against a real moto server: each instance's metadata from moto's state
(user data, a new public name after stop/start) and GetConsoleOutput answering the instance's console."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from moto.ec2.responses.general import General

from sim import console
from sim.aws import FAKE_CREDENTIALS, ec2_client
from sim.daemon import MotoResolver
from sim.imds_tree import lookup

REGION = "us-east-1"


SUBNETS = iter(range(1, 250))


@pytest.fixture
def launched(moto_url: str) -> dict[str, Any]:
    """A run_instances in a subnet of its own (the resolver finds instances by private IP)."""
    ec2 = ec2_client(moto_url, REGION)
    cidr = f"10.78.{next(SUBNETS)}.0/24"
    vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=f"{REGION}a")["Subnet"]["SubnetId"]
    ec2.modify_subnet_attribute(SubnetId=subnet, MapPublicIpOnLaunch={"Value": True})
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]

    def run(**extra: Any) -> dict[str, Any]:
        return ec2.run_instances(ImageId=ami, InstanceType="m1.xlarge", MinCount=1, MaxCount=1, SubnetId=subnet, **extra)["Instances"][0]

    return {"ec2": ec2, "run": run}


def test_user_data_is_served_and_absent_is_404(moto_url: str, launched: dict[str, Any]) -> None:
    cloud_config = "#cloud-config\nwrite_files:\n  - path: /etc/coa-test\n    content: hello\n"
    with_data, without = launched["run"](UserData=cloud_config), launched["run"]()
    resolve = MotoResolver(moto_url, REGION)
    view = resolve(with_data["PrivateIpAddress"])
    assert view is not None and lookup(view.tree, "user-data") == cloud_config
    bare = resolve(without["PrivateIpAddress"])
    assert bare is not None and lookup(bare.tree, "user-data") is None  # the server answers 404


def test_stop_start_keeps_the_ids_and_gives_a_new_public_name(moto_url: str, launched: dict[str, Any]) -> None:
    ec2, inst = launched["ec2"], launched["run"]()
    iid, ip = inst["InstanceId"], inst["PrivateIpAddress"]
    resolve = MotoResolver(moto_url, REGION)
    before = resolve(ip)
    assert before is not None
    ec2.stop_instances(InstanceIds=[iid])
    assert resolve(ip) is None  # a stopped instance answers nothing
    ec2.start_instances(InstanceIds=[iid])
    after = resolve(ip)
    assert after is not None
    assert lookup(after.tree, "meta-data/instance-id") == iid and lookup(after.tree, "meta-data/local-ipv4") == ip
    assert lookup(after.tree, "meta-data/public-hostname") != lookup(before.tree, "meta-data/public-hostname")
    assert lookup(after.tree, "meta-data/public-ipv4") != lookup(before.tree, "meta-data/public-ipv4")


def test_console_output_is_the_instances_console(moto_url: str, launched: dict[str, Any], monkeypatch: Any) -> None:
    monkeypatch.setattr(General, "get_console_output", General.get_console_output)  # undone after the test
    inst, other = launched["run"](), launched["run"]()
    consoles = {inst["InstanceId"]: "systemd[1]: Started ...\nceph-openstack-ami: admin password for https://x/: REDACTED\n"}
    console.install(consoles.get)
    client = boto3.client("ec2", endpoint_url=moto_url, region_name=REGION,
                          aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"], aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    # On the wire the output is base64, as EC2 sends it; botocore (and the AWS CLI) decode it.
    out = client.get_console_output(InstanceId=inst["InstanceId"])
    assert out["Output"] == consoles[inst["InstanceId"]]
    canned = client.get_console_output(InstanceId=other["InstanceId"])["Output"]
    assert canned.startswith("Linux version")  # no container: moto's own answer


def test_the_console_tail_is_bounded_and_starts_at_a_line() -> None:
    raw = b"".join(f"line {i:06d}\n".encode() for i in range(20000))
    text = console.tail(raw)
    assert len(text.encode()) <= console.MAX_BYTES and text.startswith("line ") and text.endswith("line 019999\n")
    assert console.tail(b"short\n") == "short\n"
