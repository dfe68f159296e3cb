"""The EC2 build lifecycle: source AMI -> builder -> provision -> image -> publish -> copies.

boto3 lives here and nowhere else. The module is layered:

* **pure helpers** (no API calls): name and id validation, the SSH CIDR, tag
  lists, source-image filters, the ``run_instances`` request, the manifest;
* **API wrappers**: one function per thing we ask EC2, each turning
  ``ClientError`` into ``AwsError("Failed to <what>: <code>: <message>")`` with a
  hint, and each removal treating "already gone" as success;
* **bounded waits** whose delay and number of checks are parameters and whose
  timeout names the resource and its last state;
* a LIFO :class:`Cleanup` registry: every temporary resource is registered
  *before* the call that creates it, by a lookup (name or build-id tag) that
  finds it even when the creating call was interrupted;
* :func:`build`, which strings the stages together.

moto differences handled here (see ``moto-notes.md``): instance types are
validated before anything is created (moto accepts any), duplicate AMI names are
checked by us, snapshots are tagged with ``create_tags`` after the image exists,
and APIs moto lacks (image block-public-access) count as "cannot tell".
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import socket
import stat
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Mapping, Sequence

from .exceptions import AwsError, ConfigError, WaitTimeout
from .profiles import DEFAULT_PROVEN_PATH, Profile, is_proven, resolve_profile
from .settings import Settings

_DEFAULTS = Settings()

# --- constants ---------------------------------------------------------------------

TAG_PREFIX = "ceph-openstack-ami"
BUILD_ID_TAG = f"{TAG_PREFIX}:build-id"
ROLE_TAG = f"{TAG_PREFIX}:role"
PROFILE_TAG = f"{TAG_PREFIX}:profile"
SOURCE_AMI_TAG = f"{TAG_PREFIX}:source-ami"

BUILDER_TYPE = "ceph-openstack-ami"
DEFAULT_MANIFEST_PATH = "build/manifest.json"
DEFAULT_ROOT_VOLUME_GIB = 30
ON_ERROR_CHOICES = ("cleanup", "abort")
STAGES = ("launch", "ssh_wait", "provision", "stop", "create_image", "publish", "copy", "cleanup")

#: What ``run_instances`` is given: IMDSv2 only, hop limit 2 (containers on the host reach it).
METADATA_OPTIONS: dict[str, Any] = {"HttpTokens": "required", "HttpPutResponseHopLimit": 2, "HttpEndpoint": "enabled"}

AMI_ID_RE = re.compile(r"^ami-[0-9a-f]{8,17}$")
# AWS: 3-128 characters; letters, digits, ( ) [ ] space . / - ' @ _
AMI_NAME_RE = re.compile(r"^[A-Za-z0-9()\[\] ./\-'@_]{3,128}$")

#: Error codes that mean "the thing is already gone" when removing it.
GONE_CODES = frozenset(
    {
        "InvalidInstanceID.NotFound",
        "InvalidGroup.NotFound",
        "InvalidKeyPair.NotFound",
        "InvalidAMIID.NotFound",
        "InvalidAMIID.Unavailable",
        "InvalidSnapshot.NotFound",
    }
)

_CREDENTIALS_HINT = "run `aws configure`, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment"

Log = Callable[[str], None]
ClientFactory = Callable[[str], Any]


# --- data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BuilderHost:
    """How to reach the builder instance; given to the provisioning callback.

    Attributes:
        instance_id: the builder's EC2 instance id.
        region: the region it runs in.
        public_ip: its public IPv4 address (None in a subnet without one).
        private_ip: its private IPv4 address.
        public_dns: its public DNS name ('' when none).
        user: the login user of the profile.
        key_path: path of the private key file (mode 0600).
        pkey: the private key as a ``paramiko.PKey`` (None when it could not be loaded).
        port: the SSH port.
        private: connect to the private address even when there is a public one.
    """

    instance_id: str
    region: str
    public_ip: str | None
    private_ip: str | None
    public_dns: str
    user: str
    key_path: str
    pkey: Any = None
    port: int = 22
    private: bool = False

    @property
    def address(self) -> str:
        """The address to connect to: the public IP, else the private one (always the private one with ``private``)."""
        addr = self.private_ip if self.private else (self.public_ip or self.private_ip)
        if not addr:
            raise AwsError(f"Builder {self.instance_id} has no IP address", hint="check the subnet and its route to the internet")
        return addr

    def spec(self) -> str:
        """The target spec string for :func:`provision.target.from_spec` (``ssh://user@ip:port``)."""
        return f"ssh://{self.user}@{self.address}:{self.port}"

    def ssh_command(self) -> str:
        """A shell command that logs in to the builder."""
        return shlex.join(["ssh", "-i", self.key_path, "-p", str(self.port), "-o", "IdentitiesOnly=yes", f"{self.user}@{self.address}"])


@dataclass(frozen=True)
class BuildOptions:
    """What the user asked for; every default comes from :class:`~provision.settings.Settings`.

    Attributes:
        region: where the builder runs and the image is made.
        instance_type: the builder's instance type (validated against the region's offerings).
        profile: a profile name or :class:`~provision.profiles.Profile`.
        source_ami: an explicit source AMI id; default: the profile's newest official image.
        ami_name: the new image's name; default ``ceph-openstack-<profile>-<UTC timestamp>``.
        ami_description: the new image's description.
        public: grant launch permission to everyone (``Group=all``) on every copy.
        regions: further regions to copy the image to (a sequence, or one comma-separated string).
        force: replace an existing image of the same name (deregister it, delete its snapshots).
        on_error: ``cleanup`` (default) removes everything on failure; ``abort`` keeps it for debugging.
        wait_delay: seconds between state checks.
        wait_attempts: state checks before a wait gives up.
        ssh_delay: seconds between SSH probes.
        ssh_attempts: SSH probes before giving up.
        caller_ip: the address SSH is admitted from (as a /32); the task layer discovers it.
        allow_cidr: an explicit wider CIDR to admit SSH from instead of ``caller_ip``.
        allow_unproven: build a profile that no simulation run has proven.
        proven_path: the simulation's proven record.
        manifest_path: the Packer-style manifest to append to.
        key_file: a private key of the user's; its public half becomes the temporary key pair.
        root_volume_gib: the builder's root volume size (at least the source image's).
        subnet_id: launch into this subnet (default: the default VPC).
        ssh_private: reach the builder at its private address (building from inside the VPC,
            or in the simulation) instead of its public one.
        extra_tags: more tags for every resource.
        custom_data: more entries for the manifest's ``custom_data``.
    """

    region: str = _DEFAULTS.region
    instance_type: str = _DEFAULTS.instance_type
    profile: str | Profile = _DEFAULTS.profile
    source_ami: str | None = None
    ami_name: str | None = None
    ami_description: str | None = None
    public: bool = False
    regions: Sequence[str] = ()
    force: bool = False
    on_error: str = "cleanup"
    wait_delay: float = _DEFAULTS.wait_delay_s
    wait_attempts: int = _DEFAULTS.wait_attempts
    ssh_delay: float = _DEFAULTS.ssh_retry_delay_s
    ssh_attempts: int = _DEFAULTS.ssh_retries
    caller_ip: str | None = None
    allow_cidr: str | None = None
    allow_unproven: bool = False
    proven_path: str = DEFAULT_PROVEN_PATH
    manifest_path: str = DEFAULT_MANIFEST_PATH
    key_file: str | None = None
    root_volume_gib: int = DEFAULT_ROOT_VOLUME_GIB
    subnet_id: str | None = None
    ssh_private: bool = False
    extra_tags: Mapping[str, str] = field(default_factory=dict)
    custom_data: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> "BuildOptions":
        """Options whose defaults come from ``settings``; ``None`` overrides are ignored (unset flags)."""
        base: dict[str, Any] = {
            "region": settings.region,
            "instance_type": settings.instance_type,
            "profile": settings.profile,
            "wait_delay": settings.wait_delay_s,
            "wait_attempts": settings.wait_attempts,
            "ssh_delay": settings.ssh_retry_delay_s,
            "ssh_attempts": settings.ssh_retries,
        }
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


@dataclass(frozen=True)
class BuildPlan:
    """The validated, resolved form of :class:`BuildOptions` (made by :func:`make_plan`, no API calls)."""

    build_id: str
    region: str
    copy_regions: tuple[str, ...]
    instance_type: str
    profile: Profile
    source_ami: str | None
    ami_name: str
    description: str
    public: bool
    force: bool
    on_error: str
    ssh_cidr: str
    wait_delay: float
    wait_attempts: int
    ssh_delay: float
    ssh_attempts: int
    allow_unproven: bool
    proven_path: str
    manifest_path: str
    key_file: str | None
    root_volume_gib: int
    subnet_id: str | None
    extra_tags: Mapping[str, str]
    custom_data: Mapping[str, str]
    ssh_private: bool = False

    @property
    def temp_name(self) -> str:
        """Name of the temporary key pair and security group."""
        return f"{TAG_PREFIX}-builder-{self.build_id[:8]}"

    @property
    def regions(self) -> tuple[str, ...]:
        """The build region, then the copy regions."""
        return (self.region, *self.copy_regions)


@dataclass
class BuildResult:
    """What a build produced.

    Attributes:
        build_id: the run's uuid (tag value and the manifest's ``packer_run_uuid``).
        ami_name: the image name (the same in every region).
        ami_ids: region -> AMI id, the build region first.
        source_ami: the image the builder started from.
        public: whether the images were made public.
        manifest_path: the manifest written.
        timings: seconds per stage (see :data:`STAGES`).
        leftovers: temporary resources that could not be removed, with how to remove them.
    """

    build_id: str
    ami_name: str
    ami_ids: dict[str, str]
    source_ami: str
    public: bool
    manifest_path: str
    timings: dict[str, float]
    leftovers: list[str] = field(default_factory=list)

    @property
    def artifact_id(self) -> str:
        """Packer's ``region:ami,region:ami`` form."""
        return artifact_id(self.ami_ids)


# --- pure helpers ------------------------------------------------------------------------


def validate_ami_id(ami_id: str) -> str:
    """Return ``ami_id`` if it looks like an AMI id (``ami-`` and 8 to 17 hex digits).

    Raises:
        ConfigError: it does not.
    """
    if not AMI_ID_RE.match(ami_id or ""):
        raise ConfigError(
            f"Malformed AMI id {ami_id!r}",
            hint="an AMI id is 'ami-' followed by 8 or 17 hexadecimal digits, e.g. ami-0abcdef1234567890",
        )
    return ami_id


def validate_ami_name(name: str) -> str:
    """Return ``name`` if EC2 accepts it as an image name.

    Raises:
        ConfigError: it is too short, too long or has characters EC2 refuses.
    """
    if not AMI_NAME_RE.match(name or ""):
        raise ConfigError(
            f"Invalid AMI name {name!r}",
            hint="use 3-128 characters: letters, digits, spaces and ( ) [ ] . / - ' @ _",
        )
    return name


def default_ami_name(profile: Profile, now: float) -> str:
    """The default image name: ``ceph-openstack-<profile>-<YYYYmmdd-HHMMSS>`` (UTC)."""
    return f"ceph-openstack-{profile.name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now))}"


def ssh_cidr(caller_ip: str | None, allow_cidr: str | None) -> str:
    """The CIDR the builder admits SSH from: the caller's single address unless a CIDR is given.

    Args:
        caller_ip: the caller's public address; becomes ``/32`` (``/128`` for IPv6).
        allow_cidr: an explicit CIDR that replaces it (the only way to widen access).

    Raises:
        ConfigError: neither is given, or either is malformed.
    """
    if allow_cidr:
        try:
            return str(ipaddress.ip_network(allow_cidr, strict=True))
        except ValueError as e:
            raise ConfigError(f"Invalid CIDR {allow_cidr!r}: {e}", hint="give a network such as 203.0.113.0/24") from e
    if not caller_ip:
        raise ConfigError(
            "No address to admit SSH from",
            hint="pass the caller's public IP (caller_ip) or an explicit allow_cidr; the builder is never opened to 0.0.0.0/0 by default",
        )
    try:
        addr = ipaddress.ip_address(caller_ip)
    except ValueError as e:
        raise ConfigError(f"Invalid caller IP address {caller_ip!r}", hint="give a single address such as 203.0.113.7") from e
    return f"{addr}/{addr.max_prefixlen}"


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


def launch_request(
    plan: BuildPlan,
    source_image: Mapping[str, Any],
    key_name: str,
    security_group_id: str,
) -> dict[str, Any]:
    """The ``run_instances`` arguments for the builder (IMDSv2 required, tagged, one instance)."""
    tags = resource_tags(plan, "builder", f"{plan.ami_name}-builder")
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
    }
    if plan.subnet_id:
        request["SubnetId"] = plan.subnet_id
    return request


def artifact_id(ami_ids: Mapping[str, str]) -> str:
    """Packer's artifact id: ``us-east-1:ami-1,eu-west-1:ami-2``."""
    return ",".join(f"{region}:{ami}" for region, ami in ami_ids.items())


def manifest_entry(
    plan: BuildPlan,
    ami_ids: Mapping[str, str],
    source_ami: str,
    build_time: int,
) -> dict[str, Any]:
    """One ``builds[]`` entry in Packer's manifest shape."""
    custom = {
        "ami_name": plan.ami_name,
        "profile": plan.profile.name,
        "source_ami": source_ami,
        "instance_type": plan.instance_type,
        "region": plan.region,
        "regions": ",".join(plan.regions),
        "public": "true" if plan.public else "false",
        "build_id": plan.build_id,
    }
    custom.update({k: str(v) for k, v in plan.custom_data.items()})
    return {
        "name": f"{BUILDER_TYPE}.{plan.profile.name}",
        "builder_type": BUILDER_TYPE,
        "build_time": int(build_time),
        "files": None,
        "artifact_id": artifact_id(ami_ids),
        "packer_run_uuid": plan.build_id,
        "custom_data": custom,
    }


def merge_manifest(existing: Mapping[str, Any] | None, entry: Mapping[str, Any]) -> dict[str, Any]:
    """Append ``entry`` to a manifest (as Packer does) and point ``last_run_uuid`` at it."""
    builds = list(existing.get("builds", [])) if existing and isinstance(existing.get("builds"), list) else []
    builds.append(dict(entry))
    return {"builds": builds, "last_run_uuid": entry["packer_run_uuid"]}


def make_plan(
    options: BuildOptions,
    *,
    available_regions: Collection[str],
    build_id: str | None = None,
    now: float | None = None,
) -> BuildPlan:
    """Validate ``options`` and resolve them into a :class:`BuildPlan` (no API calls).

    Raises:
        ConfigError: any option is invalid; the message names it and says what would be valid.
    """
    if options.on_error not in ON_ERROR_CHOICES:
        raise ConfigError(f"Unknown on_error {options.on_error!r}", hint=f"use one of: {', '.join(ON_ERROR_CHOICES)}")
    known = set(available_regions)
    wanted = options.regions.split(",") if isinstance(options.regions, str) else list(options.regions)
    wanted = [r.strip() for r in wanted if r.strip()]
    for region in (options.region, *wanted):
        if region not in known:
            raise ConfigError(
                f"Unknown EC2 region {region!r}",
                hint=f"use one of: {', '.join(sorted(known))}",
            )
    copy_regions = tuple(dict.fromkeys(r for r in wanted if r != options.region))
    profile = resolve_profile(options.profile)
    if options.source_ami is not None:
        validate_ami_id(options.source_ami)
    name = validate_ami_name(options.ami_name or default_ami_name(profile, time.time() if now is None else now))
    cidr = ssh_cidr(options.caller_ip, options.allow_cidr)
    if options.key_file and not os.path.isfile(os.path.expanduser(options.key_file)):
        raise ConfigError(
            f"SSH key file {options.key_file!r} does not exist",
            hint="pass the path of a private key (its public half is uploaded as the builder's temporary key pair), or omit it to use a generated key",
        )
    if options.wait_attempts < 1 or options.ssh_attempts < 1:
        raise ConfigError("wait_attempts and ssh_attempts must be at least 1")
    if options.wait_delay < 0 or options.ssh_delay < 0:
        raise ConfigError("wait_delay and ssh_delay must not be negative")
    if options.root_volume_gib < 1:
        raise ConfigError(f"root_volume_gib must be positive, got {options.root_volume_gib}")
    description = options.ami_description or f"{profile.display_name} with a single-node Ceph cluster backing OpenStack"
    return BuildPlan(
        build_id=build_id or str(uuid.uuid4()),
        region=options.region,
        copy_regions=copy_regions,
        instance_type=options.instance_type,
        profile=profile,
        source_ami=options.source_ami,
        ami_name=name,
        description=description[:255],
        public=options.public,
        force=options.force,
        on_error=options.on_error,
        ssh_cidr=cidr,
        wait_delay=options.wait_delay,
        wait_attempts=options.wait_attempts,
        ssh_delay=options.ssh_delay,
        ssh_attempts=options.ssh_attempts,
        allow_unproven=options.allow_unproven,
        proven_path=options.proven_path,
        manifest_path=options.manifest_path,
        key_file=os.path.expanduser(options.key_file) if options.key_file else None,
        root_volume_gib=options.root_volume_gib,
        subnet_id=options.subnet_id,
        extra_tags=dict(options.extra_tags),
        custom_data=dict(options.custom_data),
        ssh_private=options.ssh_private,
    )


# --- errors and calls ------------------------------------------------------------------


def _hint_for(code: str, operation: str) -> str:
    if code in {"UnauthorizedOperation", "AccessDenied", "AccessDeniedException"} or code.endswith(".Unauthorized"):
        return f"the credentials in use lack the IAM permission for ec2:{operation}; grant it or use other credentials"
    if code in {
        "AuthFailure",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "ExpiredToken",
        "RequestExpired",
    }:
        return "check the AWS credentials (`aws sts get-caller-identity`), " + _CREDENTIALS_HINT
    if code in {"RequestLimitExceeded", "Throttling", "ThrottlingException"}:
        return "AWS is throttling this account; wait a minute and retry"
    if code in {"InstanceLimitExceeded", "VcpuLimitExceeded", "MaxSpotInstanceCountExceeded"}:
        return "raise the EC2 quota for this region or choose a smaller instance type"
    if code in {"InsufficientInstanceCapacity", "Unsupported"}:
        return "EC2 has no capacity for this instance type here now; try another instance type, region or subnet"
    if code == "OptInRequired":
        return "the account is not opted in to this region or image; enable it in the console"
    if code.endswith(".NotFound") or code.endswith(".Malformed"):
        return "check the id and the region it lives in"
    return "see the AWS error above; `aws ec2` with --debug shows the full exchange"


def aws_error(what: str, exc: BaseException) -> AwsError:
    """Turn a botocore exception into one ``AwsError`` line: ``Failed to <what>: <code>: <message>``."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, PartialCredentialsError

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", "Unknown"))
        message = str(err.get("Message") or "").strip() or "(no message)"
        op = getattr(exc, "operation_name", "") or "?"
        return AwsError(f"Failed to {what}: {code}: {message}", hint=_hint_for(code, op))
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return AwsError(f"Failed to {what}: no AWS credentials found", hint=_CREDENTIALS_HINT)
    if isinstance(exc, EndpointConnectionError):
        return AwsError(
            f"Failed to {what}: cannot reach {getattr(exc, 'kwargs', {}).get('endpoint_url', 'the EC2 endpoint')}",
            hint="check the network (and, for a simulated build, that the moto server is running)",
        )
    return AwsError(f"Failed to {what}: {exc}")


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _call(client: Any, what: str, operation: str, *, ignore: Collection[str] = (), **params: Any) -> dict[str, Any] | None:
    """Call ``client.<operation>(**params)``; wrap failures; return None for an ``ignore``d error code."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return getattr(client, operation)(**params)
    except ClientError as e:
        if _error_code(e) in ignore:
            return None
        raise aws_error(what, e) from e
    except BotoCoreError as e:
        raise aws_error(what, e) from e


def call(client: Any, what: str, operation: str, **params: Any) -> dict[str, Any]:
    """Call ``client.<operation>(**params)``, turning any botocore failure into :class:`AwsError`."""
    result = _call(client, what, operation, **params)
    assert result is not None
    return result


def default_client_factory(
    session: Any = None,
    endpoint_url: str | None = None,
) -> ClientFactory:
    """A factory of EC2 clients, one per region, from ``session`` (default: a new boto3 session).

    ``endpoint_url`` points every client at another EC2 endpoint (a moto server for the simulation).
    """
    import boto3
    from botocore.config import Config

    sess = session or boto3.session.Session()
    cache: dict[str, Any] = {}
    config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=10, read_timeout=60)

    def factory(region: str) -> Any:
        if region not in cache:
            cache[region] = sess.client("ec2", region_name=region, endpoint_url=endpoint_url, config=config)
        return cache[region]

    return factory


def check_credentials(session: Any) -> None:
    """Refuse early, with one line, when no AWS credentials can be found.

    Raises:
        AwsError: none are configured.
    """
    from botocore.exceptions import BotoCoreError

    try:
        creds = session.get_credentials()
    except BotoCoreError as e:
        raise AwsError(f"Cannot load AWS credentials: {e}", hint=_CREDENTIALS_HINT) from e
    if creds is None:
        raise AwsError("No AWS credentials found", hint=_CREDENTIALS_HINT)


# --- bounded waits -----------------------------------------------------------------------


def wait_for(
    get_state: Callable[[], tuple[str, str]],
    *,
    resource: str,
    want: str | Collection[str],
    fail: Collection[str] = (),
    delay: float,
    attempts: int,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Poll ``get_state`` until it returns a wanted state; return that state.

    Args:
        get_state: returns ``(state, detail)``; detail explains the state (may be '').
        resource: what is waited for, for messages (``instance i-123 in us-east-1``).
        want: the state(s) to wait for.
        fail: states that will never become wanted; reaching one raises at once.
        delay: seconds between checks.
        attempts: how many checks before giving up (at least 1).
        sleep: the sleep function (tests pass a no-op).

    Raises:
        WaitTimeout: ``attempts`` checks passed without a wanted state; names the last state.
        AwsError: a ``fail`` state was reached.
    """
    wanted = {want} if isinstance(want, str) else set(want)
    label = "/".join(sorted(wanted))
    state, detail = "unknown", ""
    for attempt in range(1, max(1, attempts) + 1):
        state, detail = get_state()
        if state in wanted:
            return state
        if state in fail:
            more = f" ({detail})" if detail else ""
            raise AwsError(
                f"{resource} is {state!r}{more}; it will not become {label}", hint="look at the resource in the EC2 console for the reason"
            )
        if attempt < attempts:
            sleep(delay)
    more = f" ({detail})" if detail else ""
    raise WaitTimeout(
        f"Timed out waiting for {resource} to become {label}: last state {state!r}{more} after {attempts} checks {delay:g}s apart",
        hint="raise wait_attempts/wait_delay (or ssh_attempts/ssh_delay), or inspect the resource in the EC2 console",
    )


def instance_state(client: Any, instance_id: str) -> tuple[str, str]:
    """``(state, reason)`` of an instance; ``("gone", ...)`` when EC2 no longer knows it."""
    resp = _call(client, f"describe instance {instance_id}", "describe_instances", ignore=GONE_CODES, InstanceIds=[instance_id])
    if resp is None:
        return "gone", "not found"
    for reservation in resp.get("Reservations", []):
        for inst in reservation.get("Instances", []):
            if inst.get("InstanceId") == instance_id:
                return inst["State"]["Name"], inst.get("StateReason", {}).get("Message", "")
    return "gone", "not found"


def image_state(client: Any, ami_id: str) -> tuple[str, str]:
    """``(state, reason)`` of an image; ``("gone", ...)`` when it no longer exists."""
    resp = _call(client, f"describe image {ami_id}", "describe_images", ignore=GONE_CODES, ImageIds=[ami_id])
    images = (resp or {}).get("Images", [])
    if not images:
        return "gone", "not found"
    return images[0].get("State", "unknown"), images[0].get("StateReason", {}).get("Message", "")


def wait_instance(
    client: Any,
    instance_id: str,
    want: str,
    *,
    region: str,
    delay: float,
    attempts: int,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Wait for an instance to reach ``want`` (``running``, ``stopped``, ``terminated``)."""
    fail = {
        "running": {"shutting-down", "terminated", "stopping", "stopped", "gone"},
        "stopped": {"shutting-down", "terminated", "gone"},
        "terminated": set(),
    }.get(want, set())
    wanted: set[str] = {"terminated", "gone"} if want == "terminated" else {want}
    return wait_for(
        lambda: instance_state(client, instance_id),
        resource=f"instance {instance_id} in {region}",
        want=wanted,
        fail=fail,
        delay=delay,
        attempts=attempts,
        sleep=sleep,
    )


def wait_image_available(
    client: Any,
    ami_id: str,
    *,
    region: str,
    delay: float,
    attempts: int,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Wait for an image to become ``available``; fail at once on ``failed``/``error``/``invalid``/deregistration."""
    return wait_for(
        lambda: image_state(client, ami_id),
        resource=f"image {ami_id} in {region}",
        want="available",
        fail={"failed", "error", "invalid", "deregistered", "disabled", "gone"},
        delay=delay,
        attempts=attempts,
        sleep=sleep,
    )


def tcp_probe(timeout: float = 5.0) -> Callable[[BuilderHost], bool]:
    """A default SSH-readiness probe: True once the builder's SSH port accepts a TCP connection."""

    def probe(host: BuilderHost) -> bool:
        try:
            with socket.create_connection((host.address, host.port), timeout=timeout) as s:
                s.settimeout(timeout)
                return s.recv(4).startswith(b"SSH-")
        except OSError:
            return False

    return probe


def wait_ssh(
    host: BuilderHost,
    probe: Callable[[BuilderHost], bool],
    *,
    delay: float,
    attempts: int,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Probe until the builder answers SSH.

    Raises:
        WaitTimeout: it did not within ``attempts`` probes.
    """
    wait_for(
        lambda: ("ready", "") if probe(host) else ("not answering", f"{host.address}:{host.port}"),
        resource=f"SSH on builder {host.instance_id}",
        want="ready",
        delay=delay,
        attempts=attempts,
        sleep=sleep,
    )


# --- cleanup -------------------------------------------------------------------------------


@dataclass
class _Action:
    label: str
    undo: Callable[[], None]
    manual: str = ""


class Cleanup:
    """A LIFO registry of what to undo: the last resource made is the first removed.

    Register a resource *before* the call that creates it (the undo looks it up
    by name or tag), so an interrupted call leaves nothing behind. Undo actions
    treat "already gone" as success, so running them twice is harmless.
    """

    def __init__(self, log: Log = print) -> None:
        self._actions: dict[int, _Action] = {}
        self._next = 0
        self.log = log

    def add(self, label: str, undo: Callable[[], None], manual: str = "") -> int:
        """Register ``undo`` (what removes ``label``); return a handle for :meth:`update`/:meth:`keep`.

        Args:
            label: what will be removed (``instance i-123 in us-east-1``).
            undo: removes it; must treat "already gone" as success.
            manual: a command a person can run to remove it by hand.
        """
        handle = self._next
        self._next += 1
        self._actions[handle] = _Action(label, undo, manual)
        return handle

    def update(self, handle: int, *, label: str | None = None, manual: str | None = None) -> None:
        """Refine the label or manual command once the resource's id is known."""
        action = self._actions.get(handle)
        if action is None:
            return
        if label is not None:
            action.label = label
        if manual is not None:
            action.manual = manual

    def keep(self, handle: int) -> None:
        """Forget a registration: the resource is a result, not a temporary."""
        self._actions.pop(handle, None)

    def pending(self) -> list[tuple[str, str]]:
        """``(label, manual command)`` of everything still registered, newest first."""
        return [(a.label, a.manual) for _, a in sorted(self._actions.items(), reverse=True)]

    def __len__(self) -> int:
        return len(self._actions)

    def run(self) -> list[str]:
        """Undo everything, newest first; return one line per resource that could not be removed.

        Every action runs even when an earlier one failed or was interrupted
        (Ctrl-C during cleanup skips only the current action).
        """
        failures: list[str] = []
        for handle in sorted(self._actions, reverse=True):
            action = self._actions.pop(handle)
            try:
                action.undo()
            except KeyboardInterrupt:
                failures.append(f"{action.label}: interrupted" + (f"; remove it with: {action.manual}" if action.manual else ""))
            except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the rest
                first = str(e).splitlines()[0] if str(e) else type(e).__name__
                failures.append(f"{action.label}: {first}" + (f"; remove it with: {action.manual}" if action.manual else ""))
        return failures


# --- API wrappers ---------------------------------------------------------------------------


def check_instance_type(client: Any, region: str, instance_type: str, architecture: str | None = None) -> dict[str, Any]:
    """Return the instance type's description if EC2 offers it in ``region`` (for ``architecture``).

    moto's ``run_instances`` accepts any type, so this runs before anything is created.

    Raises:
        ConfigError: the type does not exist, is not offered in the region, or cannot run the architecture.
    """
    resp = _call(
        client,
        f"describe instance type {instance_type}",
        "describe_instance_types",
        ignore={"InvalidInstanceType"},
        InstanceTypes=[instance_type],
    )
    types = (resp or {}).get("InstanceTypes", [])
    if not types:
        raise ConfigError(
            f"EC2 has no instance type {instance_type!r}",
            hint="choose a type from `aws ec2 describe-instance-types`, e.g. m1.xlarge or m5.xlarge",
        )
    offers = call(
        client,
        f"list offerings of {instance_type} in {region}",
        "describe_instance_type_offerings",
        LocationType="region",
        Filters=[{"Name": "instance-type", "Values": [instance_type]}],
    ).get("InstanceTypeOfferings", [])
    if not any(o.get("InstanceType") == instance_type for o in offers):
        raise ConfigError(
            f"Instance type {instance_type!r} is not offered in {region}",
            hint=f"choose another instance type or region (`aws ec2 describe-instance-type-offerings --region {region}`)",
        )
    info = types[0]
    arches = info.get("ProcessorInfo", {}).get("SupportedArchitectures", [])
    if architecture and arches and architecture not in arches:
        raise ConfigError(
            f"Instance type {instance_type!r} cannot run {architecture} images (it runs {', '.join(arches)})",
            hint="choose an instance type for the profile's architecture",
        )
    return info


def find_source_image(client: Any, profile: Profile, region: str) -> dict[str, Any]:
    """The newest available image of the profile's publisher that matches its name pattern.

    Raises:
        ConfigError: none matches in ``region``.
    """
    images = call(
        client,
        f"look up {profile.display_name} images in {region}",
        "describe_images",
        Owners=[profile.source_owner],
        Filters=source_image_filters(profile),
    ).get("Images", [])
    best = newest_image(images)
    if best is None:
        raise ConfigError(
            f"No {profile.display_name} image named {profile.source_name_pattern!r} from account {profile.source_owner} in {region}",
            hint="pass an explicit source AMI id, or choose a region where the distribution publishes images",
        )
    return dict(best)


def describe_source_image(client: Any, ami_id: str, region: str, profile: Profile | None = None) -> dict[str, Any]:
    """The explicit source image ``ami_id``, which must exist, be available (and match the profile's architecture).

    Raises:
        ConfigError: it is malformed, does not exist in ``region``, is not available or has another architecture.
    """
    validate_ami_id(ami_id)
    resp = _call(
        client,
        f"describe image {ami_id}",
        "describe_images",
        ignore={"InvalidAMIID.NotFound", "InvalidAMIID.Unavailable", "InvalidAMIID.Malformed"},
        ImageIds=[ami_id],
    )
    images = (resp or {}).get("Images", [])
    if not images:
        raise ConfigError(f"Source AMI {ami_id} does not exist in {region}", hint="check the id, and that it lives in the build region")
    image = dict(images[0])
    if image.get("State") != "available":
        raise ConfigError(f"Source AMI {ami_id} is {image.get('State')!r}, not available")
    if profile and image.get("Architecture") and image["Architecture"] != profile.architecture:
        raise ConfigError(
            f"Source AMI {ami_id} is {image['Architecture']}, but profile {profile.name} is {profile.architecture}",
            hint="choose an image of the profile's architecture",
        )
    return image


def images_named(client: Any, name: str, region: str) -> list[dict[str, Any]]:
    """This account's images called exactly ``name`` (AWS refuses duplicates; moto does not, so we check)."""
    return call(
        client,
        f"look up images named {name!r} in {region}",
        "describe_images",
        Owners=["self"],
        Filters=[{"Name": "name", "Values": [name]}],
    ).get("Images", [])


def delete_image(client: Any, ami_id: str, region: str, snapshot_ids: Collection[str] = ()) -> bool:
    """Deregister an image, then delete its snapshots; True if anything was removed.

    "Already gone" is success. Snapshots are read from the image before it is
    deregistered (they cannot be deleted while it is registered); ``snapshot_ids``
    adds any that are already known.
    """
    removed = False
    resp = _call(client, f"describe image {ami_id} in {region}", "describe_images", ignore=GONE_CODES, ImageIds=[ami_id])
    images = (resp or {}).get("Images", [])
    snaps = list(dict.fromkeys([*(image_snapshot_ids(images[0]) if images else []), *snapshot_ids]))
    if images and images[0].get("State") != "deregistered":
        _call(client, f"deregister image {ami_id} in {region}", "deregister_image", ignore=GONE_CODES, ImageId=ami_id)
        removed = True
    for snap in snaps:
        if _call(client, f"delete snapshot {snap} in {region}", "delete_snapshot", ignore=GONE_CODES, SnapshotId=snap) is not None:
            removed = True
    return removed


def images_of_build(client: Any, build_id: str, region: str) -> list[str]:
    """Ids of this account's images tagged with ``build_id``."""
    images = call(
        client,
        f"look up images of build {build_id} in {region}",
        "describe_images",
        Owners=["self"],
        Filters=[{"Name": f"tag:{BUILD_ID_TAG}", "Values": [build_id]}],
    ).get("Images", [])
    return [i["ImageId"] for i in images]


def instances_of_build(client: Any, build_id: str, region: str) -> list[str]:
    """Ids of instances tagged with ``build_id`` that are not terminated."""
    resp = call(
        client,
        f"look up instances of build {build_id} in {region}",
        "describe_instances",
        Filters=[
            {"Name": f"tag:{BUILD_ID_TAG}", "Values": [build_id]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped", "shutting-down"]},
        ],
    )
    return [i["InstanceId"] for r in resp.get("Reservations", []) for i in r.get("Instances", [])]


def terminate_instances(
    client: Any,
    instance_ids: Collection[str],
    region: str,
    *,
    delay: float,
    attempts: int,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Terminate instances and wait until they are terminated; "already gone" is success."""
    if not instance_ids:
        return
    for iid in instance_ids:
        _call(client, f"terminate instance {iid} in {region}", "terminate_instances", ignore=GONE_CODES, InstanceIds=[iid])
    for iid in instance_ids:
        wait_instance(client, iid, "terminated", region=region, delay=delay, attempts=attempts, sleep=sleep)


def delete_security_group(
    client: Any,
    group_id: str,
    region: str,
    *,
    delay: float,
    attempts: int,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Delete a security group, retrying while EC2 still sees it in use; "already gone" is success."""
    from botocore.exceptions import ClientError

    for attempt in range(1, max(1, attempts) + 1):
        try:
            client.delete_security_group(GroupId=group_id)
            return
        except ClientError as e:
            code = _error_code(e)
            if code in GONE_CODES:
                return
            if code != "DependencyViolation" or attempt >= attempts:
                raise aws_error(f"delete security group {group_id} in {region}", e) from e
        sleep(delay)


def security_group_by_name(client: Any, name: str, vpc_id: str | None) -> str | None:
    """The id of the security group called ``name`` (in ``vpc_id``), or None."""
    filters = [{"Name": "group-name", "Values": [name]}]
    if vpc_id:
        filters.append({"Name": "vpc-id", "Values": [vpc_id]})
    groups = call(client, f"look up security group {name}", "describe_security_groups", Filters=filters).get("SecurityGroups", [])
    return groups[0]["GroupId"] if groups else None


def block_public_access_state(client: Any, region: str, log: Log) -> str | None:
    """The account's AMI block-public-access state in ``region``, or None when the API cannot tell.

    "Cannot tell" (an older API, moto, missing permission) is logged and treated as unknown.
    """
    try:
        resp = client.get_image_block_public_access_state()
    except (NotImplementedError, AttributeError) as e:
        log(f"    (cannot tell whether AMI block public access is on in {region}: the API is not available: {e}; continuing)")
        return None
    except Exception as e:  # noqa: BLE001 - any answer other than a state means "unknown"
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        log(f"    (cannot tell whether AMI block public access is on in {region}: {first}; continuing)")
        return None
    state = resp.get("ImageBlockPublicAccessState")
    return str(state) if state else None


def ebs_encryption_by_default(client: Any, region: str, log: Log) -> bool | None:
    """Whether new EBS volumes (and so the image's snapshots) are encrypted by default; None when unknown."""
    try:
        return bool(client.get_ebs_encryption_by_default()["EbsEncryptionByDefault"])
    except Exception as e:  # noqa: BLE001 - unknown is logged, not fatal
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        log(f"    (cannot tell whether EBS encryption by default is on in {region}: {first}; continuing)")
        return None


def check_can_publish(client: Any, region: str, log: Log) -> None:
    """Refuse, before anything is built, an account/region where a public image is impossible.

    Raises:
        AwsError: AMI block public access is on, or EBS encryption by default is on.
    """
    state = block_public_access_state(client, region, log)
    if state is not None and state != "unblocked":
        raise AwsError(
            f"Cannot publish in {region}: the account's AMI block public access is {state!r}",
            hint=f"turn it off (`aws ec2 disable-image-block-public-access --region {region}`) or build without --public",
        )
    if ebs_encryption_by_default(client, region, log):
        raise AwsError(
            f"Cannot publish in {region}: EBS encryption by default is on, so the image's snapshots would be encrypted and encrypted images cannot be public",
            hint=f"turn it off (`aws ec2 disable-ebs-encryption-by-default --region {region}`) or build without --public",
        )


def encrypted_snapshots(client: Any, snapshot_ids: Sequence[str], region: str) -> list[str]:
    """Which of ``snapshot_ids`` are encrypted."""
    if not snapshot_ids:
        return []
    snaps = call(client, f"describe snapshots in {region}", "describe_snapshots", SnapshotIds=list(snapshot_ids)).get("Snapshots", [])
    return [s["SnapshotId"] for s in snaps if s.get("Encrypted")]


def publish_image(client: Any, image: Mapping[str, Any], region: str) -> None:
    """Grant launch permission to everyone (``Group=all``) and check that it took.

    Raises:
        AwsError: the image's snapshots are encrypted (AWS cannot make those public), or the grant did not take.
    """
    ami_id = image["ImageId"]
    enc = encrypted_snapshots(client, image_snapshot_ids(image), region)
    if enc:
        raise AwsError(
            f"Refusing to publish {ami_id} in {region}: its snapshots {', '.join(enc)} are encrypted, and encrypted images cannot be made public",
            hint=f"turn off EBS encryption by default (`aws ec2 disable-ebs-encryption-by-default --region {region}`) and rebuild, or build without --public",
        )
    call(
        client, f"make {ami_id} public in {region}", "modify_image_attribute", ImageId=ami_id, LaunchPermission={"Add": [{"Group": "all"}]}
    )
    perms = call(
        client, f"read launch permissions of {ami_id} in {region}", "describe_image_attribute", ImageId=ami_id, Attribute="launchPermission"
    ).get("LaunchPermissions", [])
    if not any(p.get("Group") == "all" for p in perms):
        raise AwsError(
            f"Failed to make {ami_id} public in {region}: launch permission 'all' did not take",
            hint="check the account's AMI block public access setting",
        )


def require_imds_v2(client: Any, image: Mapping[str, Any], region: str, log: Log) -> None:
    """Mark the image IMDSv2-only (``ImdsSupport=v2.0``): instances launched from it require tokens.

    ``create_image`` has no ImdsSupport parameter, so this uses ``modify_image_attribute``
    (one-way on AWS). When ``describe_images`` does not report the attribute back
    (moto ignores it), that is logged rather than failing.
    """
    ami_id = image["ImageId"]
    if image.get("ImdsSupport") == "v2.0":
        return
    call(client, f"require IMDSv2 on {ami_id} in {region}", "modify_image_attribute", ImageId=ami_id, ImdsSupport={"Value": "v2.0"})
    images = call(client, f"describe image {ami_id}", "describe_images", ImageIds=[ami_id]).get("Images", [])
    if not images or images[0].get("ImdsSupport") != "v2.0":
        log(f"    (the API did not report ImdsSupport back for {ami_id}; set to v2.0 but not verified)")


def tag_image_and_snapshots(client: Any, image: Mapping[str, Any], tags: Mapping[str, str], region: str) -> None:
    """Tag an image and every snapshot behind it (snapshot tags cannot be set at creation in moto)."""
    ids = [image["ImageId"], *image_snapshot_ids(image)]
    call(client, f"tag {', '.join(ids)} in {region}", "create_tags", Resources=ids, Tags=tag_list(tags))


def describe_image(client: Any, ami_id: str, region: str) -> dict[str, Any]:
    """The description of one image (which must exist)."""
    images = call(client, f"describe image {ami_id} in {region}", "describe_images", ImageIds=[ami_id]).get("Images", [])
    if not images:
        raise AwsError(f"Image {ami_id} vanished from {region}")
    return dict(images[0])


def describe_instance(client: Any, instance_id: str, region: str) -> dict[str, Any]:
    """The description of one instance (which must exist)."""
    resp = call(client, f"describe instance {instance_id} in {region}", "describe_instances", InstanceIds=[instance_id])
    for r in resp.get("Reservations", []):
        for inst in r.get("Instances", []):
            return dict(inst)
    raise AwsError(f"Instance {instance_id} vanished from {region}")


# --- keys -------------------------------------------------------------------------------------


@dataclass
class _Key:
    """The builder's login key: where it is on disk, its public half, and its paramiko form."""

    path: str
    public: str
    pkey: Any
    temp_dir: str | None


def _generate_key(temp_dir: str) -> _Key:
    """A fresh ed25519 key, made locally: the private half never leaves this machine."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    path = os.path.join(temp_dir, "builder_ed25519")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    pkey: Any = None
    try:
        import io

        import paramiko

        pkey = paramiko.Ed25519Key.from_private_key(io.StringIO(private.decode()))
    except Exception:  # noqa: BLE001 - the file path is enough to connect
        pkey = None
    return _Key(path=path, public=f"{public} {TAG_PREFIX}-builder", pkey=pkey, temp_dir=temp_dir)


def _load_user_key(path: str) -> _Key:
    """The user's key: the public half from ``PATH.pub`` or derived from the private key.

    Raises:
        ConfigError: the key cannot be read (passphrase-protected without a ``.pub``, unknown format).
    """
    pub_path = path + ".pub"
    pkey: Any = None
    try:
        import paramiko

        pkey = paramiko.PKey.from_path(path)
    except Exception as e:  # noqa: BLE001 - only fatal when we also lack the .pub
        if not os.path.isfile(pub_path):
            raise ConfigError(
                f"Cannot read SSH key {path!r}: {e}",
                hint=f"use an unencrypted private key, or put its public half next to it as {pub_path}",
            ) from e
    if os.path.isfile(pub_path):
        public = Path(pub_path).read_text().strip()
    else:
        public = f"{pkey.get_name()} {pkey.get_base64()}"
    return _Key(path=path, public=public, pkey=pkey, temp_dir=None)


# --- the build ------------------------------------------------------------------------------------


def _write_manifest(path: str, entry: Mapping[str, Any], log: Log) -> None:
    p = Path(path)
    existing: dict[str, Any] | None = None
    if p.exists():
        try:
            existing = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            log(f"    (the existing manifest {p} is unreadable ({e}); starting a new one)")
    data = merge_manifest(existing, entry)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_manifest_writable(path: str) -> None:
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p.parent, prefix=f".{p.name}.probe"):
            pass
    except OSError as e:
        raise ConfigError(f"Cannot write the manifest {p}: {e.strerror}", hint="choose a writable manifest path") from e


def build(
    options: BuildOptions,
    provision: Callable[[BuilderHost], None],
    *,
    session: Any = None,
    clients: ClientFactory | None = None,
    endpoint_url: str | None = None,
    ssh_probe: Callable[[BuilderHost], bool] | None = None,
    on_image_created: Callable[[str, str], None] | None = None,
    log: Log = print,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    build_id: str | None = None,
) -> BuildResult:
    """Build the AMI: launch a builder, provision it, image it, publish and copy; clean up always.

    Every check that can fail without creating anything runs first (options,
    region, proven profile, credentials, instance type, source image, name
    collisions, publishability). From then on every temporary resource is
    registered for cleanup before it is created; on any failure or Ctrl-C it is
    all removed (including half-made images and copies) unless
    ``options.on_error == "abort"``, which keeps it and logs how to reach the builder.

    Args:
        options: what to build.
        provision: configures the builder over SSH; gets a :class:`BuilderHost`.
        session: the boto3 session (credentials, region list); default: a new one.
        clients: region -> EC2 client; default: clients from ``session`` (and ``endpoint_url``).
        endpoint_url: EC2 endpoint for every region (a moto server for the simulation).
        ssh_probe: returns True once the builder answers SSH; default: a TCP probe of port 22.
        on_image_created: called with ``(ami_id, instance_id)`` right after ``create_image``
            returns (the simulation commits the builder container here).
        log: where progress lines go.
        sleep: the sleep between checks (tests pass a no-op).
        clock: the clock stages are timed with.
        build_id: the run's uuid (default: a new one).

    Returns:
        The AMI ids by region, the manifest path and the time each stage took.

    Raises:
        ConfigError: an option, the region, the instance type, the source image or the name is refused.
        AwsError: an AWS call failed (``WaitTimeout`` when a wait ran out).
    """
    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        sess = session or boto3.session.Session()
        available = sess.get_available_regions("ec2")
    except BotoCoreError as e:
        raise AwsError(f"Cannot start an AWS session: {e}", hint=_CREDENTIALS_HINT) from e
    plan = make_plan(options, available_regions=available, build_id=build_id)
    if not plan.allow_unproven and not is_proven(plan.profile, plan.proven_path):
        raise ConfigError(
            f"Profile {plan.profile.name} has not been proven by a simulation run (no entry in {plan.proven_path})",
            hint=f"run the simulation for it first (`invoke sim.up --profile {plan.profile.name}`), or allow an unproven profile (--allow-unproven)",
        )
    if clients is None:
        check_credentials(sess)
        clients = default_client_factory(sess, endpoint_url)
    run = _Build(plan, clients, log=log, sleep=sleep, clock=clock)
    run.preflight()
    try:
        host = run.launch()
        with run.stage("ssh_wait", f"Waiting for SSH on {host.address}"):
            wait_ssh(host, ssh_probe or tcp_probe(), delay=plan.ssh_delay, attempts=plan.ssh_attempts, sleep=sleep)
        with run.stage("provision", f"Provisioning {host.instance_id}"):
            provision(host)
        run.stop()
        run.create_image(on_image_created)
        run.publish()
        run.copy()
        _write_manifest(plan.manifest_path, manifest_entry(plan, run.ami_ids, run.source_id, int(time.time())), log)
    except BaseException as exc:
        run.fail(exc)
        raise
    return run.finish()


class _Build:
    """One build in progress: the plan, the clients, what was made, and how to undo it."""

    def __init__(
        self, plan: BuildPlan, clients: ClientFactory, *, log: Log, sleep: Callable[[float], None], clock: Callable[[], float]
    ) -> None:
        self.plan = plan
        self.clients = clients
        self.ec2 = clients(plan.region)
        self.log = log
        self.sleep = sleep
        self.clock = clock
        self.cleanup = Cleanup(log)
        self.timings: dict[str, float] = {}
        self.source: dict[str, Any] = {}
        self.key: _Key | None = None
        self.host: BuilderHost | None = None
        self.image: dict[str, Any] = {}
        self.image_refs: list[_ImageRef] = []
        self.ami_ids: dict[str, str] = {}
        self.image_tags: dict[str, str] = {}

    @property
    def source_id(self) -> str:
        """The source AMI id."""
        return str(self.source["ImageId"])

    @contextlib.contextmanager
    def stage(self, name: str, message: str) -> Iterator[None]:
        """Log a stage and add its duration (even when it fails) to ``timings``."""
        self.log(f"==> {message}")
        start = self.clock()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + (self.clock() - start)

    # --- waits with the plan's bounds ------------------------------------------------
    def wait_instance(self, client: Any, instance_id: str, want: str, region: str) -> None:
        wait_instance(
            client, instance_id, want, region=region, delay=self.plan.wait_delay, attempts=self.plan.wait_attempts, sleep=self.sleep
        )

    def wait_image(self, client: Any, ami_id: str, region: str) -> None:
        wait_image_available(client, ami_id, region=region, delay=self.plan.wait_delay, attempts=self.plan.wait_attempts, sleep=self.sleep)

    # --- stages ------------------------------------------------------------------------
    def preflight(self) -> None:
        """Every check that needs the API but creates nothing."""
        plan = self.plan
        self.log(f"==> Checking the build ({plan.profile.display_name}, {plan.instance_type} in {plan.region}, build {plan.build_id})")
        check_instance_type(self.ec2, plan.region, plan.instance_type, plan.profile.architecture)
        if plan.source_ami:
            self.source = describe_source_image(self.ec2, plan.source_ami, plan.region, plan.profile)
        else:
            self.source = find_source_image(self.ec2, plan.profile, plan.region)
        self.log(f"    source image {self.source_id} ({self.source.get('Name', '?')})")
        for region in plan.regions:
            existing = images_named(self.clients(region), plan.ami_name, region)
            if existing and not plan.force:
                ids = ", ".join(i["ImageId"] for i in existing)
                raise ConfigError(
                    f"An image named {plan.ami_name!r} already exists in {region} ({ids})",
                    hint="choose another AMI name, or pass force to replace it (it is deregistered and its snapshots deleted)",
                )
        if plan.public:
            for region in plan.regions:
                check_can_publish(self.clients(region), region, self.log)
        if plan.key_file:
            self.key = _load_user_key(plan.key_file)
        _check_manifest_writable(plan.manifest_path)
        self.image_tags = {**resource_tags(plan, "image", plan.ami_name), SOURCE_AMI_TAG: self.source_id}

    def launch(self) -> BuilderHost:
        """Key pair, security group (SSH from the caller only), builder; wait until it runs."""
        plan, ec2, cleanup = self.plan, self.ec2, self.cleanup
        with self.stage("launch", f"Launching the builder ({plan.instance_type}, SSH from {plan.ssh_cidr} only)"):
            if self.key is None:
                temp_dir = tempfile.mkdtemp(prefix=f"{TAG_PREFIX}-{plan.build_id[:8]}-")
                cleanup.add(
                    f"key directory {temp_dir}", lambda: shutil.rmtree(temp_dir, ignore_errors=True), f"rm -rf {shlex.quote(temp_dir)}"
                )
                os.chmod(temp_dir, stat.S_IRWXU)
                self.key = _generate_key(temp_dir)
            key = self.key
            key_name = plan.temp_name

            def remove_key_pair() -> None:
                _call(ec2, f"delete key pair {key_name} in {plan.region}", "delete_key_pair", ignore=GONE_CODES, KeyName=key_name)

            cleanup.add(
                f"key pair {key_name} in {plan.region}",
                remove_key_pair,
                f"aws ec2 delete-key-pair --region {plan.region} --key-name {key_name}",
            )
            call(
                ec2,
                f"import key pair {key_name} in {plan.region}",
                "import_key_pair",
                KeyName=key_name,
                PublicKeyMaterial=key.public.encode(),
                TagSpecifications=tag_specifications(["key-pair"], resource_tags(plan, "key-pair", key_name)),
            )
            group_id = self._security_group()

            instance: dict[str, str | None] = {"id": None}

            def remove_builder() -> None:
                ids = set(instances_of_build(ec2, plan.build_id, plan.region))
                if instance["id"]:
                    ids.add(instance["id"])
                terminate_instances(ec2, sorted(ids), plan.region, delay=plan.wait_delay, attempts=plan.wait_attempts, sleep=self.sleep)

            handle = cleanup.add(f"builder of build {plan.build_id} in {plan.region}", remove_builder)
            resp = call(
                ec2, f"launch the builder in {plan.region}", "run_instances", **launch_request(plan, self.source, key_name, group_id)
            )
            iid = instance["id"] = str(resp["Instances"][0]["InstanceId"])
            cleanup.update(
                handle,
                label=f"builder instance {iid} in {plan.region}",
                manual=f"aws ec2 terminate-instances --region {plan.region} --instance-ids {iid}",
            )
            self.log(f"    builder {iid} launched; waiting for it to run")
            self.wait_instance(ec2, iid, "running", plan.region)
            desc = describe_instance(ec2, iid, plan.region)
            self.host = BuilderHost(
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
            self.log(f"    builder {iid} is running at {self.host.address}")
        return self.host

    def _security_group(self) -> str:
        """Create the temporary security group admitting SSH from the plan's CIDR only; return its id."""
        plan, ec2 = self.plan, self.ec2
        vpc_id = None
        if plan.subnet_id:
            subnets = call(ec2, f"describe subnet {plan.subnet_id}", "describe_subnets", SubnetIds=[plan.subnet_id]).get("Subnets", [])
            vpc_id = subnets[0]["VpcId"] if subnets else None
        group: dict[str, str | None] = {"id": None}

        def remove() -> None:
            group_id = group["id"] or security_group_by_name(ec2, plan.temp_name, vpc_id)
            if group_id:
                delete_security_group(
                    ec2, group_id, plan.region, delay=plan.wait_delay, attempts=max(3, min(plan.wait_attempts, 24)), sleep=self.sleep
                )

        handle = self.cleanup.add(f"security group {plan.temp_name} in {plan.region}", remove)
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
        self.cleanup.update(
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

    def stop(self) -> None:
        """Stop the builder so the image is taken from a quiet disk."""
        assert self.host is not None
        iid = self.host.instance_id
        with self.stage("stop", f"Stopping {iid}"):
            call(self.ec2, f"stop the builder {iid}", "stop_instances", InstanceIds=[iid])
            self.wait_instance(self.ec2, iid, "stopped", self.plan.region)

    def create_image(self, on_image_created: Callable[[str, str], None] | None) -> None:
        """Create the image (replacing a same-named one with ``force``), wait, tag it and its snapshots, require IMDSv2."""
        assert self.host is not None
        plan, ec2, iid = self.plan, self.ec2, self.host.instance_id
        with self.stage("create_image", f"Creating image {plan.ami_name!r}"):
            if plan.force:
                _replace_existing(ec2, plan.ami_name, plan.region, self.log)
            ref = self._register_image(ec2, plan.region)
            ref.id = str(
                call(
                    ec2,
                    f"create image {plan.ami_name!r} from {iid}",
                    "create_image",
                    InstanceId=iid,
                    Name=plan.ami_name,
                    Description=plan.description,
                    NoReboot=True,
                    TagSpecifications=tag_specifications(["image"], self.image_tags),
                )["ImageId"]
            )
            ref.named(self.cleanup)
            self.log(f"    image {ref.id} requested; waiting for it to be available")
            if on_image_created is not None:
                on_image_created(ref.id, iid)
            self.image = self._finish_image(ec2, ref)
            self.ami_ids[plan.region] = ref.id

    def publish(self) -> None:
        """Make the image public when asked (refused for encrypted snapshots)."""
        ami = self.image["ImageId"]
        with self.stage("publish", f"Publishing {ami}" if self.plan.public else f"Keeping {ami} private"):
            if self.plan.public:
                publish_image(self.ec2, self.image, self.plan.region)
                self.log(f"    {ami} is public in {self.plan.region}")

    def copy(self) -> None:
        """Start every copy, then wait for each, tag it, require IMDSv2 and publish it when asked."""
        plan, ami = self.plan, self.image["ImageId"]
        message = f"Copying {ami} to {', '.join(plan.copy_regions)}" if plan.copy_regions else "No copies requested"
        with self.stage("copy", message):
            started: list[tuple[Any, _ImageRef]] = []
            for region in plan.copy_regions:
                rc = self.clients(region)
                if plan.force:
                    _replace_existing(rc, plan.ami_name, region, self.log)
                ref = self._register_image(rc, region)
                ref.id = str(
                    call(
                        rc,
                        f"copy {ami} to {region}",
                        "copy_image",
                        Name=plan.ami_name,
                        Description=plan.description,
                        SourceImageId=ami,
                        SourceRegion=plan.region,
                        TagSpecifications=tag_specifications(["image"], self.image_tags),
                    )["ImageId"]
                )
                ref.named(self.cleanup)
                self.log(f"    copy {ref.id} in {region} requested")
                started.append((rc, ref))
            for rc, ref in started:
                image = self._finish_image(rc, ref)
                if plan.public:
                    publish_image(rc, image, ref.region)
                self.ami_ids[ref.region] = str(ref.id)
                self.log(f"    {ref.id} is available in {ref.region}" + (" and public" if plan.public else ""))

    def _register_image(self, client: Any, region: str) -> _ImageRef:
        """Register removal of this build's image in ``region`` before it is requested (found by id or build tag)."""
        ref = _ImageRef(handle=-1, region=region)
        build_id = self.plan.build_id

        def remove() -> None:
            ids = set(images_of_build(client, build_id, region))
            if ref.id:
                ids.add(ref.id)
            for ami_id in sorted(ids):
                delete_image(client, ami_id, region, ref.snapshots if ami_id == ref.id else ())

        ref.handle = self.cleanup.add(f"image of build {build_id} in {region}", remove)
        self.image_refs.append(ref)
        return ref

    def _finish_image(self, client: Any, ref: _ImageRef) -> dict[str, Any]:
        """Wait for an image, then tag it and its snapshots and require IMDSv2; return its description."""
        assert ref.id is not None
        self.wait_image(client, ref.id, ref.region)
        image = describe_image(client, ref.id, ref.region)
        ref.snapshots = image_snapshot_ids(image)
        tag_image_and_snapshots(client, image, self.image_tags, ref.region)
        require_imds_v2(client, image, ref.region, self.log)
        return image

    # --- endings -------------------------------------------------------------------------
    def finish(self) -> BuildResult:
        """Keep the images, remove every temporary resource, and report."""
        for ref in self.image_refs:
            self.cleanup.keep(ref.handle)
        with self.stage("cleanup", "Removing the builder, its key pair and security group"):
            leftovers = self.cleanup.run()
        for line in leftovers:
            self.log(f"    could not remove {line}")
        for name in STAGES:
            self.timings.setdefault(name, 0.0)
        self.log(f"==> Built {artifact_id(self.ami_ids)} (manifest {self.plan.manifest_path})")
        return BuildResult(
            build_id=self.plan.build_id,
            ami_name=self.plan.ami_name,
            ami_ids=dict(self.ami_ids),
            source_ami=self.source_id,
            public=self.plan.public,
            manifest_path=self.plan.manifest_path,
            timings=dict(self.timings),
            leftovers=leftovers,
        )

    def fail(self, exc: BaseException) -> None:
        """Undo everything (or, with on_error=abort, keep it and say how to reach it)."""
        what = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        self.log(f"!!! Build {what}: {first}")
        if self.plan.on_error == "abort":
            self.log("!!! on_error=abort: keeping everything for inspection")
            if self.host is not None:
                self.log(f"    reach the builder with: {self.host.ssh_command()}")
            for label, manual in self.cleanup.pending():
                self.log(f"    kept {label}" + (f"; remove it with: {manual}" if manual else ""))
            return
        with self.stage("cleanup", "Removing everything this build made"):
            leftovers = self.cleanup.run()
        for line in leftovers:
            self.log(f"    could not remove {line}")
        if leftovers:
            exc.add_note("Could not remove:\n" + "\n".join(f"  {line}" for line in leftovers))


@dataclass
class _ImageRef:
    """An image being made: its cleanup handle, and its id and snapshots once known."""

    handle: int
    region: str
    id: str | None = None
    snapshots: list[str] = field(default_factory=list)

    def named(self, cleanup: Cleanup) -> None:
        """Refine the cleanup label once the id is known."""
        cleanup.update(
            self.handle,
            label=f"image {self.id} and its snapshots in {self.region}",
            manual=f"aws ec2 deregister-image --region {self.region} --image-id {self.id}  # then delete its snapshots",
        )


def _replace_existing(client: Any, name: str, region: str, log: Log) -> None:
    """``force``: deregister this account's images called ``name`` in ``region`` and delete their snapshots."""
    for image in images_named(client, name, region):
        log(f"    replacing {image['ImageId']} ({name!r}) in {region}: deregistering it and deleting its snapshots")
        delete_image(client, image["ImageId"], region, image_snapshot_ids(image))
