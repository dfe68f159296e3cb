"""The builder's temporary resources, each registered for removal before the call that makes it:
the key pair, the security group (SSH from one CIDR only) and the builder instance itself."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ..steps import Log
from .api import GONE_CODES, call, describe_instance, try_call
from .cleanup import Cleanup, delete_security_group, instances_of_build, security_group_by_name, terminate_instances
from .keys import Key
from .plan import BUILD_ID_TAG, BuilderHost, BuildPlan
from .shapes import ingress_permissions, launch_request, resource_tags, tag_specifications
from .waits import wait_instance


def import_key_pair(ec2: Any, plan: BuildPlan, key: Key, cleanup: Cleanup) -> str:
    """Import the key's public half as the temporary key pair (its removal registered first); return its name."""
    key_name = plan.temp_name

    def remove_key_pair() -> None:
        try_call(ec2, f"delete key pair {key_name} in {plan.region}", "delete_key_pair", ignore=GONE_CODES, KeyName=key_name)

    cleanup.add(
        f"key pair {key_name} in {plan.region}",
        remove_key_pair,
        f"aws ec2 delete-key-pair --region {plan.region} --key-name {key_name}",
        kind="key pair",
    )
    call(
        ec2,
        f"import key pair {key_name} in {plan.region}",
        "import_key_pair",
        KeyName=key_name,
        PublicKeyMaterial=key.public.encode(),
        TagSpecifications=tag_specifications(["key-pair"], resource_tags(plan, "key-pair", key_name)),
    )
    return key_name


def launch_builder(
    ec2: Any,
    plan: BuildPlan,
    source: Mapping[str, Any],
    key: Key,
    key_name: str,
    group_id: str,
    cleanup: Cleanup,
    *,
    log: Log,
    sleep: Callable[[float], None],
    role: str = "builder",
) -> BuilderHost:
    """Launch the builder (its removal registered first) and wait until it runs; return how to reach it.

    ``role="test"``: the test stage's instance of the new image (``source``), made the same way.

    The removal terminates the builder by the id ``run_instances`` returned; only when that
    call was interrupted before it answered is the builder looked up by its build tag.
    """
    instance: dict[str, str | None] = {"id": None}

    def remove_builder() -> None:
        iid = instance["id"]
        ids = [iid] if iid else instances_of_build(ec2, plan.build_id, plan.region)
        terminate_instances(ec2, ids, plan.region, delay=plan.wait_delay, attempts=plan.wait_attempts, sleep=sleep)

    handle = cleanup.add(
        f"{role} of build {plan.build_id} in {plan.region}",
        remove_builder,
        f"aws ec2 describe-instances --region {plan.region} --filters Name=tag:{BUILD_ID_TAG},Values={plan.build_id}"
        "  # then terminate-instances for each one",
        kind=f"{role} instance",
    )
    resp = call(ec2, f"launch the {role} in {plan.region}", "run_instances", **launch_request(plan, source, key_name, group_id, role))
    iid = instance["id"] = str(resp["Instances"][0]["InstanceId"])
    cleanup.update(
        handle,
        label=f"{role} instance {iid} in {plan.region}",
        manual=f"aws ec2 terminate-instances --region {plan.region} --instance-ids {iid}",
    )
    log(f"    {role} {iid} launched; waiting for it to run")
    wait_instance(ec2, iid, "running", region=plan.region, delay=plan.wait_delay, attempts=plan.wait_attempts, sleep=sleep)
    desc = describe_instance(ec2, iid, plan.region)
    host = BuilderHost(
        instance_id=iid,
        region=plan.region,
        public_ip=desc.get("PublicIpAddress"),
        private_ip=desc.get("PrivateIpAddress"),
        public_dns=desc.get("PublicDnsName", "") or "",
        user=plan.profile.login_user,
        key_path=key.path,
        pkey=key.pkey,
        private=plan.ssh_private,
    )
    log(f"    {role} {iid} is running at {host.address}")
    return host


def create_security_group(ec2: Any, plan: BuildPlan, cleanup: Cleanup, *, sleep: Callable[[float], None]) -> str:
    """Create the temporary security group admitting SSH from the plan's CIDR only (its removal registered first); return its id."""
    vpc_id = None
    if plan.subnet_id:
        subnets = call(ec2, f"describe subnet {plan.subnet_id}", "describe_subnets", SubnetIds=[plan.subnet_id]).get("Subnets", [])
        vpc_id = subnets[0]["VpcId"] if subnets else None
    group: dict[str, str | None] = {"id": None}

    def remove() -> None:
        group_id = group["id"] or security_group_by_name(ec2, plan.temp_name, vpc_id)
        if group_id:
            delete_security_group(
                ec2, group_id, plan.region, delay=plan.wait_delay, attempts=max(3, min(plan.wait_attempts, 24)), sleep=sleep
            )

    handle = cleanup.add(f"security group {plan.temp_name} in {plan.region}", remove, kind="security group")
    params: dict[str, Any] = {
        "GroupName": plan.temp_name,
        "Description": f"ceph-openstack-ami builder {plan.build_id}: SSH from {plan.ssh_cidr} only",
        "TagSpecifications": tag_specifications(["security-group"], resource_tags(plan, "security-group", plan.temp_name)),
    }
    if vpc_id:
        params["VpcId"] = vpc_id
    group_id = group["id"] = str(
        call(ec2, f"create security group {plan.temp_name} in {plan.region}", "create_security_group", **params)["GroupId"]
    )
    cleanup.update(
        handle,
        label=f"security group {group_id} in {plan.region}",
        manual=f"aws ec2 delete-security-group --region {plan.region} --group-id {group_id}",
    )
    call(
        ec2,
        f"admit SSH from {plan.ssh_cidr} to {group_id}",
        "authorize_security_group_ingress",
        GroupId=group_id,
        IpPermissions=ingress_permissions(plan.ssh_cidr),
    )
    return group_id
