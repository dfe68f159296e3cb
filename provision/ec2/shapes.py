"""The EC2 request and response shapes of a build, pure: tags, filters, the security-group rule,
the builder's ``run_instances`` request and the snapshots behind an image."""

from __future__ import annotations

import ipaddress
from typing import Any, Mapping, Sequence

from ..profiles import Profile
from .plan import BUILD_ID_TAG, PROFILE_TAG, ROLE_TAG, BuildPlan

#: What ``run_instances`` is given: IMDSv2 only, hop limit 2 (containers on the host reach it).
METADATA_OPTIONS: dict[str, Any] = {"HttpTokens": "required", "HttpPutResponseHopLimit": 2, "HttpEndpoint": "enabled"}


def ingress_permissions(cidr: str, port: int = 22) -> list[dict[str, Any]]:
    """The security-group rule admitting SSH (``port``/tcp) from ``cidr`` only."""
    net = ipaddress.ip_network(cidr)
    rule: dict[str, Any] = {"IpProtocol": "tcp", "FromPort": port, "ToPort": port}
    desc = "SSH to the ceph-openstack-ami builder"
    if net.version == 6:
        rule["Ipv6Ranges"] = [{"CidrIpv6": str(net), "Description": desc}]
    else:
        rule["IpRanges"] = [{"CidrIp": str(net), "Description": desc}]
    return [rule]


def resource_tags(plan: BuildPlan, role: str, name: str) -> dict[str, str]:
    """The tags of one resource of this build (``Name``, build id, role, profile, extras)."""
    tags = {
        "Name": name,
        BUILD_ID_TAG: plan.build_id,
        ROLE_TAG: role,
        PROFILE_TAG: plan.profile.name,
    }
    tags.update(plan.extra_tags)
    return tags


def tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    """``{"k": "v"}`` -> ``[{"Key": "k", "Value": "v"}]`` (sorted, for stable requests)."""
    return [{"Key": k, "Value": str(v)} for k, v in sorted(tags.items())]


def tag_specifications(resource_types: Sequence[str], tags: Mapping[str, str]) -> list[dict[str, Any]]:
    """``TagSpecifications`` applying ``tags`` to each of ``resource_types``."""
    return [{"ResourceType": rt, "Tags": tag_list(tags)} for rt in resource_types]


def tags_dict(tag_items: Sequence[Mapping[str, str]] | None) -> dict[str, str]:
    """``[{"Key": k, "Value": v}]`` -> ``{k: v}``."""
    return {t["Key"]: t.get("Value", "") for t in tag_items or ()}


def source_image_filters(profile: Profile) -> list[dict[str, Any]]:
    """``describe_images`` filters for the profile's official images."""
    return [
        {"Name": "name", "Values": [profile.source_name_pattern]},
        {"Name": "architecture", "Values": [profile.architecture]},
        {"Name": "state", "Values": ["available"]},
        {"Name": "virtualization-type", "Values": ["hvm"]},
    ]


def newest_image(images: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The image with the latest ``CreationDate`` (ties broken by name), or None."""
    if not images:
        return None
    return max(images, key=lambda i: (i.get("CreationDate", ""), i.get("Name", "")))


def image_snapshot_ids(image: Mapping[str, Any]) -> list[str]:
    """The EBS snapshot ids behind an image's block device mappings."""
    return [b["Ebs"]["SnapshotId"] for b in image.get("BlockDeviceMappings", ()) if b.get("Ebs", {}).get("SnapshotId")]


def root_block_device(image: Mapping[str, Any], size_gib: int) -> list[dict[str, Any]]:
    """The builder's root volume: the image's root device, at least ``size_gib``, gone with the instance."""
    root = image.get("RootDeviceName") or "/dev/xvda"
    current = 0
    for b in image.get("BlockDeviceMappings", ()):
        if b.get("DeviceName") == root:
            current = int(b.get("Ebs", {}).get("VolumeSize") or 0)
    return [
        {
            "DeviceName": root,
            "Ebs": {"VolumeSize": max(size_gib, current), "VolumeType": "gp3", "DeleteOnTermination": True},
        }
    ]


def launch_request(plan: BuildPlan, source_image: Mapping[str, Any], key_name: str, security_group_id: str, role: str = "builder") -> dict[str, Any]:
    """The ``run_instances`` arguments for the builder, or the test stage's instance (``role="test"``): IMDSv2 required, tagged, one instance."""
    tags = resource_tags(plan, role, f"{plan.ami_name}-{role}")
    request: dict[str, Any] = {
        "ImageId": source_image["ImageId"],
        "InstanceType": plan.instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "KeyName": key_name,
        "SecurityGroupIds": [security_group_id],
        "MetadataOptions": dict(METADATA_OPTIONS),
        "BlockDeviceMappings": root_block_device(source_image, plan.root_volume_gib),
        "TagSpecifications": tag_specifications(["instance", "volume"], tags),
        # Idempotent: a retried request (botocore retries throttled calls) cannot launch a second builder.
        "ClientToken": plan.build_id if role == "builder" else f"{plan.build_id}-{role}",
    }
    if plan.subnet_id:
        request["SubnetId"] = plan.subnet_id
    return request
