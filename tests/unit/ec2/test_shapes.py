"""The EC2 request shapes: the SSH rule, tags, the newest image, the builder's run_instances request."""

from __future__ import annotations

from pathlib import Path

from provision.ec2.plan import BUILD_ID_TAG, ROLE_TAG
from provision.ec2.shapes import ingress_permissions, launch_request, newest_image, tag_list

from .helpers import (
    NAME,
    plan_for,
)


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


def test_launch_request_requires_imdsv2_and_tags(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, root_volume_gib=30)
    image = {
        "ImageId": "ami-12345678",
        "RootDeviceName": "/dev/xvda",
        "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}],
    }
    req = launch_request(plan, image, "kp", "sg-1")
    assert req["MetadataOptions"] == {"HttpTokens": "required", "HttpPutResponseHopLimit": 2, "HttpEndpoint": "enabled"}
    assert req["InstanceType"] == "m1.xlarge" and req["MinCount"] == req["MaxCount"] == 1
    assert req["KeyName"] == "kp" and req["SecurityGroupIds"] == ["sg-1"]
    assert req["ClientToken"] == plan.build_id, "a retried launch cannot start a second builder"
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
