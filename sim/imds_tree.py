"""The metadata tree of one instance, built from moto's ``describe_instances`` (pure data).

:func:`metadata_tree` maps an Instance to the paths its metadata service serves (keys
below ``/latest/``), :func:`lookup` answers a path from such a tree (leaves and
listings), and :class:`InstanceView` is what the server (:mod:`sim.imds`) knows about one
instance: its tree and its metadata options. Standard library only; tested as data.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

#: The account id when neither the caller nor the network interface names one.
DEFAULT_ACCOUNT = "123456789012"


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def _iso(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, _dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(_dt.timezone.utc)
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def _fake_mac(instance_id: str) -> str:
    digest = hashlib.sha256(instance_id.encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in digest[:5])


def _group_names(groups: Iterable[Mapping[str, Any]]) -> list[str]:
    return [g["GroupName"] for g in groups if g.get("GroupName")]


def _interfaces(instance: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The instance's network interfaces, by device index (the primary first)."""
    return sorted(instance.get("NetworkInterfaces") or [], key=lambda e: e.get("Attachment", {}).get("DeviceIndex", 0))


def _availability_zone(instance: Mapping[str, Any], region: str) -> str:
    return instance.get("Placement", {}).get("AvailabilityZone") or f"{region}a"


def _instance_entries(instance: Mapping[str, Any], region: str, mac: str) -> dict[str, str]:
    """The ``meta-data/`` entries every instance has."""
    private_dns = instance.get("PrivateDnsName") or ""
    return {
        "ami-id": instance.get("ImageId", ""),
        "ami-launch-index": str(instance.get("AmiLaunchIndex", 0)),
        "ami-manifest-path": "(unknown)",
        "hostname": private_dns,
        "instance-action": "none",
        "instance-id": instance["InstanceId"],
        "instance-life-cycle": "spot" if instance.get("InstanceLifecycle") == "spot" else "on-demand",
        "instance-type": instance.get("InstanceType", ""),
        "local-hostname": private_dns,
        "local-ipv4": instance.get("PrivateIpAddress") or "",
        "mac": mac,
        "placement/availability-zone": _availability_zone(instance, region),
        "placement/region": region,
        "profile": "default-hvm",
        "services/domain": "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com",
        "services/partition": _partition(region),
    }


def _optional_entries(instance: Mapping[str, Any], primary: Mapping[str, Any], reservation_id: str | None) -> dict[str, str]:
    """Public address and name, reservation, security groups: only when the instance has them."""
    md: dict[str, str] = {}
    if instance.get("PublicIpAddress"):
        md["public-ipv4"] = instance["PublicIpAddress"]
    if instance.get("PublicDnsName"):
        md["public-hostname"] = instance["PublicDnsName"]
    if reservation_id:
        md["reservation-id"] = reservation_id
    group_names = _group_names(instance.get("SecurityGroups") or []) or _group_names(primary.get("Groups") or [])
    if group_names:
        md["security-groups"] = "\n".join(group_names)
    return md


def _block_device_entries(instance: Mapping[str, Any]) -> dict[str, str]:
    """``block-device-mapping/``: the root device (as ``ami`` and ``root``) and each other volume."""
    md: dict[str, str] = {}
    root_device = instance.get("RootDeviceName")
    if root_device:
        md["block-device-mapping/ami"] = root_device
        md["block-device-mapping/root"] = root_device
    ebs = [m["DeviceName"] for m in instance.get("BlockDeviceMappings") or [] if m.get("DeviceName") != root_device]
    for n, device in enumerate(ebs, start=1):
        md[f"block-device-mapping/ebs{n}"] = device
    return md


def _public_key_entries(instance: Mapping[str, Any], public_key: str | None) -> dict[str, str]:
    """``public-keys/``, listed as ``0=KEYNAME`` as EC2 lists it; nothing without a key pair."""
    if not public_key:
        return {}
    return {
        "public-keys/": f"0={instance.get('KeyName') or 'key'}",
        "public-keys/0/openssh-key": public_key.strip(),
    }


def _interface_entries(
    instance: Mapping[str, Any], eni: Mapping[str, Any], is_primary: bool, mac: str, account: str
) -> dict[str, str]:
    """``network/interfaces/macs/MAC/*`` of one interface (empty values left out)."""
    private_ip = instance.get("PrivateIpAddress") or ""
    private_dns = instance.get("PrivateDnsName") or ""
    public_ip = instance.get("PublicIpAddress") or ""
    public_dns = instance.get("PublicDnsName") or ""
    emac = eni.get("MacAddress") or mac
    base = f"network/interfaces/macs/{emac}/"
    assoc = eni.get("Association") or {}
    eni_public_ip = assoc.get("PublicIp") or (public_ip if is_primary else "")
    eni_public_dns = (public_dns if is_primary else "") or assoc.get("PublicDnsName") or ""
    privates = [p["PrivateIpAddress"] for p in eni.get("PrivateIpAddresses") or [] if p.get("PrivateIpAddress")]
    entries = {
        "device-number": str(eni.get("Attachment", {}).get("DeviceIndex", 0)),
        "interface-id": eni.get("NetworkInterfaceId", ""),
        "local-hostname": eni.get("PrivateDnsName") or private_dns,
        "local-ipv4s": "\n".join(privates) or eni.get("PrivateIpAddress") or private_ip,
        "mac": emac,
        "owner-id": eni.get("OwnerId") or account,
        "security-group-ids": "\n".join(g["GroupId"] for g in eni.get("Groups") or [] if g.get("GroupId")),
        "security-groups": "\n".join(_group_names(eni.get("Groups") or [])),
        "subnet-id": eni.get("SubnetId") or instance.get("SubnetId") or "",
        "vpc-id": eni.get("VpcId") or instance.get("VpcId") or "",
    }
    if eni_public_ip:
        entries["public-ipv4s"] = eni_public_ip
        entries[f"ipv4-associations/{eni_public_ip}"] = eni.get("PrivateIpAddress") or private_ip
    if eni_public_dns:
        entries["public-hostname"] = eni_public_dns
    return {base + k: v for k, v in entries.items() if v}


def _tag_entries(instance: Mapping[str, Any]) -> dict[str, str]:
    """``tags/instance/KEY`` when ``InstanceMetadataTags`` is enabled (keys with ``/`` are left out, as on EC2)."""
    options = instance.get("MetadataOptions") or {}
    if options.get("InstanceMetadataTags") != "enabled":
        return {}
    return {f"tags/instance/{tag['Key']}": tag.get("Value", "") for tag in instance.get("Tags") or [] if "/" not in tag["Key"]}


def _identity_document(instance: Mapping[str, Any], region: str, account: str) -> str:
    """``dynamic/instance-identity/document``: the instance identity document as EC2 formats it."""
    document = {
        "accountId": account,
        "architecture": instance.get("Architecture", "x86_64"),
        "availabilityZone": _availability_zone(instance, region),
        "billingProducts": None,
        "devpayProductCodes": None,
        "marketplaceProductCodes": None,
        "imageId": instance.get("ImageId", ""),
        "instanceId": instance["InstanceId"],
        "instanceType": instance.get("InstanceType", ""),
        "kernelId": instance.get("KernelId"),
        "pendingTime": _iso(instance.get("LaunchTime")),
        "privateIp": instance.get("PrivateIpAddress") or None,
        "ramdiskId": instance.get("RamdiskId"),
        "region": region,
        "version": "2017-09-30",
    }
    return json.dumps(document, indent=2)


def metadata_tree(
    instance: Mapping[str, Any],
    public_key: str | None,
    region: str,
    *,
    reservation_id: str | None = None,
    user_data: str | bytes | None = None,
    account_id: str | None = None,
) -> dict[str, str]:
    """Map a boto3 ``describe_instances`` Instance to the paths its metadata service serves.

    Keys are paths below ``/latest/`` (``meta-data/instance-id``,
    ``dynamic/instance-identity/document``, ``user-data``); values are the bodies. A key
    ending in ``/`` overrides the listing of that directory (EC2 lists ``public-keys/``
    as ``0=KEYNAME``); every other listing is derived by :func:`lookup`. Values EC2
    leaves out (no public address, no key pair, tags not enabled) are absent, so they
    answer 404 as on EC2.

    Args:
        instance: one element of ``Reservations[].Instances[]``.
        public_key: the OpenSSH public key of the instance's key pair, or None.
        region: the region the instance runs in.
        reservation_id: ``Reservations[].ReservationId`` (the Instance dict lacks it).
        user_data: the instance's user data, if any.
        account_id: owner account; defaults to the network interface's ``OwnerId``.
    """
    enis = _interfaces(instance)
    primary = enis[0] if enis else {}
    mac = primary.get("MacAddress") or _fake_mac(instance["InstanceId"])
    account = account_id or primary.get("OwnerId") or DEFAULT_ACCOUNT
    md = _instance_entries(instance, region, mac)
    md.update(_optional_entries(instance, primary, reservation_id))
    md.update(_block_device_entries(instance))
    md.update(_public_key_entries(instance, public_key))
    for index, eni in enumerate(enis or [{}]):
        md.update(_interface_entries(instance, eni, index == 0, mac, account))
    md.update(_tag_entries(instance))
    tree = {f"meta-data/{k}": v for k, v in md.items()}
    tree["dynamic/instance-identity/document"] = _identity_document(instance, region, account)
    if user_data is not None:
        tree["user-data"] = user_data.decode("utf-8", errors="replace") if isinstance(user_data, bytes) else user_data
    return tree


def lookup(tree: Mapping[str, str], path: str) -> str | None:
    """Return the body for ``path`` (relative to ``/latest/``) in ``tree``, or None for 404.

    A leaf answers its value; a directory (with or without its trailing slash) answers
    its listing: an explicit ``dir/`` key if present, otherwise its children one per
    line, subdirectories with a trailing ``/``. The ``/latest/`` listing itself has no
    slashes (``dynamic``, ``meta-data``, ``user-data``), as on EC2.
    """
    rel = path.strip("/")
    if rel and rel in tree and not path.endswith("/"):
        return tree[rel]
    prefix = rel + "/" if rel else ""
    if prefix and prefix in tree:
        return tree[prefix]
    children: dict[str, bool] = {}
    for key in tree:
        if key.startswith(prefix) and len(key) > len(prefix):
            head, sep, _ = key[len(prefix) :].partition("/")
            children[head] = children.get(head, False) or bool(sep)
    if not children:
        return tree.get(rel) if rel else None
    if not rel:
        return "\n".join(sorted(children))
    return "\n".join(sorted(f"{name}/" if sub else name for name, sub in children.items()))


@dataclass(frozen=True)
class InstanceView:
    """What the metadata service knows about one instance: its tree and its metadata options.

    Attributes:
        tree: paths below ``/latest/`` to bodies (see :func:`metadata_tree`).
        http_tokens: ``"optional"`` (IMDSv1 allowed) or ``"required"`` (tokens only).
        hop_limit: IP TTL of the token PUT's answer (``HttpPutResponseHopLimit``).
        enabled: False when ``HttpEndpoint`` is ``disabled``: every request gets 403.
    """

    tree: Mapping[str, str]
    http_tokens: str = "optional"
    hop_limit: int = 1
    enabled: bool = True

    @property
    def instance_id(self) -> str:
        """The instance this view describes (tokens are bound to it)."""
        return self.tree.get("meta-data/instance-id", "")


def instance_view(
    instance: Mapping[str, Any],
    public_key: str | None,
    region: str,
    **tree_options: Any,
) -> InstanceView:
    """Build the :class:`InstanceView` of a ``describe_instances`` Instance, honouring its ``MetadataOptions``.

    ``tree_options`` go to :func:`metadata_tree` (``reservation_id``, ``user_data``, ``account_id``).
    """
    options = instance.get("MetadataOptions") or {}
    return InstanceView(
        tree=metadata_tree(instance, public_key, region, **tree_options),
        http_tokens=options.get("HttpTokens") or "optional",
        hop_limit=int(options.get("HttpPutResponseHopLimit") or 1),
        enabled=(options.get("HttpEndpoint") or "enabled") == "enabled",
    )
