"""The build's plan, pure: what the user asked for (:class:`BuildOptions`), checked and resolved
into a :class:`BuildPlan` by :func:`make_plan`, what a build made (:class:`BuildResult`), how to
reach the builder (:class:`BuilderHost`), and the validation of ids, names and the SSH CIDR.

Nothing here calls an API or reads the network.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Collection, Mapping, Sequence

from ..exceptions import AwsError, ConfigError
from ..image.updates import Package
from ..profiles import DEFAULT_PROVEN_PATH, Profile, resolve_profile
from ..settings import Settings

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
#: The stages of a build, in order (each timed in :attr:`BuildResult.timings`). ``replace`` is
#: where ``force`` removes an earlier image of the same name, after the new one is available.
STAGES = ("launch", "ssh_wait", "provision", "stop", "create_image", "verify", "publish", "copy", "replace", "manifest", "cleanup")

AMI_ID_RE = re.compile(r"^ami-[0-9a-f]{8,17}$")
# AWS: 3-128 characters; letters, digits, ( ) [ ] space . / - ' @ _
AMI_NAME_RE = re.compile(r"^[A-Za-z0-9()\[\] ./\-'@_]{3,128}$")


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
        force: replace an existing image of the same name, once the new one is available
            (see :mod:`provision.ec2.imaging` for the order).
        on_error: ``cleanup`` (default) removes everything on failure; ``abort`` keeps it for debugging.
        verify: run the test stage (:mod:`provision.ec2.verify`) before publishing; ``False`` is
            ``--skip-verify``, for people who know why.
        keep_test_instance: after a passing test stage, keep its instance running (with its
            security group, key pair and private key) instead of terminating it: the image's
            first instance, already tested; :attr:`BuildResult.test_instance` says how to reach it.
        wait_delay: seconds between state checks.
        wait_attempts: state checks before a wait gives up.
        ssh_delay: seconds between SSH probes.
        ssh_attempts: SSH probes before giving up.
        caller_ip: the address SSH is admitted from (as a /32); the task layer discovers it.
        allow_cidr: an explicit wider CIDR to admit SSH from instead of ``caller_ip``.
        allow_world: accept ``0.0.0.0/0`` or ``::/0`` as ``allow_cidr`` (refused otherwise).
        trust_source_owner: accept an explicit ``source_ami`` whose owner is not the profile's publisher.
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
    verify: bool = True
    keep_test_instance: bool = False
    wait_delay: float = _DEFAULTS.wait_delay_s
    wait_attempts: int = _DEFAULTS.wait_attempts
    ssh_delay: float = _DEFAULTS.ssh_retry_delay_s
    ssh_attempts: int = _DEFAULTS.ssh_retries
    caller_ip: str | None = None
    allow_cidr: str | None = None
    allow_world: bool = False
    trust_source_owner: bool = False
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
    trust_source_owner: bool = False
    verify: bool = True
    keep_test_instance: bool = False

    @property
    def temp_name(self) -> str:
        """Name of the temporary key pair and security group."""
        return f"{TAG_PREFIX}-builder-{self.build_id[:8]}"

    @property
    def regions(self) -> tuple[str, ...]:
        """The build region, then the copy regions."""
        return (self.region, *self.copy_regions)

    @property
    def temp_image_name(self) -> str:
        """The name a new image is made under while an image of :attr:`ami_name` still exists (``force``)."""
        return temp_image_name(self.ami_name, self.build_id)


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
        packages: the builder's installed packages after provisioning (also in the manifest).
        test_instance: the test stage's instance, when kept (``keep_test_instance``); else None.
    """

    build_id: str
    ami_name: str
    ami_ids: dict[str, str]
    source_ami: str
    public: bool
    manifest_path: str
    timings: dict[str, float]
    leftovers: list[str] = field(default_factory=list)
    packages: list[Package] = field(default_factory=list)
    test_instance: BuilderHost | None = None

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


def temp_image_name(name: str, build_id: str) -> str:
    """``<name>-new-<build id's first 8>``, shortened to EC2's 128 characters (never equal to ``name``)."""
    suffix = f"-new-{build_id[:8]}"
    return name[: 128 - len(suffix)] + suffix


def ssh_cidr(caller_ip: str | None, allow_cidr: str | None, allow_world: bool = False) -> str:
    """The CIDR the builder admits SSH from: the caller's single address unless a CIDR is given.

    Args:
        caller_ip: the caller's public address; becomes ``/32`` (``/128`` for IPv6).
        allow_cidr: an explicit CIDR that replaces it (the only way to widen access).
        allow_world: accept the whole internet (``0.0.0.0/0``, ``::/0``) as ``allow_cidr``.

    Raises:
        ConfigError: neither is given, either is malformed, or ``allow_cidr`` is the whole
            internet without ``allow_world``.
    """
    if allow_cidr:
        try:
            net = ipaddress.ip_network(allow_cidr, strict=True)
        except ValueError as e:
            raise ConfigError(f"Invalid CIDR {allow_cidr!r}: {e}", hint="give a network such as 203.0.113.0/24") from e
        if net.prefixlen == 0 and not allow_world:
            raise ConfigError(
                f"Refusing to admit SSH to the builder from the whole internet ({net})",
                hint="give your own address or network (--caller-ip, or --allow-cidr 203.0.113.0/24), or pass --allow-world if you mean it",
            )
        return str(net)
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


def cidr_warning(cidr: str) -> str | None:
    """The one-line warning for an SSH CIDR wider than a single address (``/32``, ``/128``), else None."""
    net = ipaddress.ip_network(cidr)
    if net.prefixlen == net.max_prefixlen:
        return None
    if net.prefixlen == 0:
        return f"warning: SSH to the builder is open to the whole internet ({net}) for the length of the build"
    return f"warning: SSH to the builder is admitted from {net} ({net.num_addresses} addresses), not from a single address"


def artifact_id(ami_ids: Mapping[str, str]) -> str:
    """Packer's artifact id: ``us-east-1:ami-1,eu-west-1:ami-2``."""
    return ",".join(f"{region}:{ami}" for region, ami in ami_ids.items())


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
    cidr = ssh_cidr(options.caller_ip, options.allow_cidr, options.allow_world)
    if options.key_file and not os.path.isfile(os.path.expanduser(options.key_file)):
        raise ConfigError(
            f"SSH key file {options.key_file!r} does not exist",
            hint="pass the path of a private key (its public half is uploaded as the builder's temporary key pair), or omit it to use a generated key",
        )
    if options.keep_test_instance and not options.verify:
        raise ConfigError("--keep-test-instance keeps the test stage's instance, and --skip-verify skips that stage",
                          hint="drop one of the two")
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
        trust_source_owner=options.trust_source_owner,
        verify=options.verify,
        keep_test_instance=options.keep_test_instance,
    )
