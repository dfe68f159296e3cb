"""The builder over SSH, and the build on AWS as ``invoke build.ami`` runs it.

:func:`provision_builder` is the one way a build reaches its builder (on AWS and in the
simulation): an :class:`~provision.target.ssh.SSHTarget` from the settings' SSH bounds, then over
that one connection the distribution's updates (:mod:`provision.image.updates`),
:func:`~provision.image.prepare.prepare_image` (provision, scrub, audit), and the list of the
packages installed, which the build records in the manifest.
:func:`build_ami` adds what only a build on AWS needs before it starts: the region checked, the
proven profile chosen, and the caller's public address discovered for the builder's /32 SSH rule.
"""

from __future__ import annotations

import urllib.request
from typing import Callable, Sequence

from ..exceptions import ConfigError
from ..image.prepare import prepare_image
from ..image.updates import UPDATES_STEP, Package, installed_packages
from ..profiles import DEFAULT_PROVEN_PATH, load_proven
from ..ready import wait_ready
from ..settings import Settings
from ..steps import Log, run_steps
from ..target.ssh import SSHTarget
from .api import check_region
from .build import build
from .build import dry_run as check_build
from .plan import BuilderHost, BuildOptions, BuildResult
from .verify import Booted, TestStage

#: Answers the caller's public address as AWS sees it.
CHECKIP_URL = "https://checkip.amazonaws.com"


def builder_target(host: BuilderHost, settings: Settings, log: Log = print) -> SSHTarget:
    """The SSH target of the builder: its key (in memory, else its file) and the settings' SSH retries, delay and timeout."""
    return SSHTarget(
        host.address,
        user=host.user,
        port=host.port,
        pkey=host.pkey,
        key_filename=None if host.pkey else host.key_path,
        retries=settings.ssh_retries,
        retry_delay=settings.ssh_retry_delay_s,
        connect_timeout=settings.ssh_connect_timeout_s,
        log=log,
    )


def provision_builder(host: BuilderHost, settings: Settings, profile: str, log: Log = print) -> list[Package]:
    """Update, provision, scrub and audit the builder over one SSH connection; return its installed packages.

    The updates come first, so everything provisioned is installed on an up-to-date system;
    the package list is read last, after the provisioning. One connection throughout: the
    scrub removes the key it came in with.

    Raises:
        CommandFailed: the updates failed (apt's exit code and last lines say why).
        AuditFailed: the audit found something that must not be in a public image.
    """
    target = builder_target(host, settings, log)
    with target:
        run_steps(target, settings, [UPDATES_STEP], log)
        prepare_image(target, settings, profile, log=log)
        packages = installed_packages(target)
    log(f"    {len(packages)} packages installed (recorded in the manifest)")
    return packages


#: Changes at every boot: the kernel's boot id (a VM's reboot) and PID 1's start time (a container's).
BOOT_MARKER = "cat /proc/sys/kernel/random/boot_id; cut -d' ' -f22 /proc/1/stat"


def ready_over_ssh(host: BuilderHost, settings: Settings, log: Log = print) -> Booted:
    """Wait (bounded: ``wait_ready``'s timeout) until ``host`` passes every readiness check; how it booted.

    Raises:
        ConnectError: SSH does not answer (while it reboots, say).
        NotReady: a check still fails when the wait ends.
    """
    target = builder_target(host, settings, log)
    with target:
        wait_ready(target, settings, log=log)
        return Booted(target.run(BOOT_MARKER).stdout.strip(), target.server_key())


def host_key_over_ssh(host: BuilderHost, settings: Settings, log: Log = print) -> str:
    """The SSH host key ``host`` answers with."""
    target = builder_target(host, settings, log)
    with target:
        return target.server_key()


def test_stage(settings: Settings, log: Log = print, reboot: Callable[[str], None] | None = None) -> TestStage:
    """The build's test stage over SSH, with the settings' SSH bounds (``reboot``: see :class:`TestStage`)."""
    return TestStage(
        ready=lambda host: ready_over_ssh(host, settings, log),
        host_key=lambda host: host_key_over_ssh(host, settings, log),
        reboot=reboot,
    )


def choose_profile(profile: str | None, default: str, proven_path: str = DEFAULT_PROVEN_PATH) -> str:
    """The profile to build: the one asked for, else the only one the simulation has proven, else ``default``.

    Raises:
        ConfigError: the proven record exists but cannot be read.
    """
    proven = load_proven(proven_path)
    return profile or (next(iter(proven)) if len(proven) == 1 else default)


def discover_caller_ip(url: str = CHECKIP_URL, timeout: float = 5) -> str:
    """This machine's public address as AWS sees it (for the builder's /32 SSH rule).

    Raises:
        ConfigError: the address cannot be discovered (the hint says how to give it).
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read().decode().strip()
    except OSError as e:
        raise ConfigError(
            f"Cannot discover your public address ({e})",
            hint="pass --caller-ip A.B.C.D (or --allow-cidr CIDR to admit a wider range)",
        ) from e


def build_ami(
    settings: Settings,
    *,
    profile: str | None = None,
    source_ami: str | None = None,
    public: bool = False,
    regions: Sequence[str] = (),
    ami_name: str | None = None,
    force: bool = False,
    on_error: str = "cleanup",
    caller_ip: str | None = None,
    allow_cidr: str | None = None,
    allow_world: bool = False,
    trust_source_owner: bool = False,
    allow_unproven: bool = False,
    key_file: str | None = None,
    verify: bool = True,
    keep_test_instance: bool = False,
    log: Log = print,
    dry_run: bool = False,
) -> BuildResult | list[str]:
    """Build the AMI on AWS: check the region, choose the profile, admit SSH from the caller, then :func:`build`.

    Args:
        settings: the defaults (region, instance type, waits, SSH bounds) and what is provisioned.
        profile: the distribution profile; default: the only proven one, else the settings' profile.
        caller_ip: the address SSH is admitted from; default: discovered (not asked for with ``allow_cidr``).
        allow_cidr: admit SSH from this CIDR instead of the caller's single address (a wider one
            is warned about; the whole internet is refused unless ``allow_world``).
        trust_source_owner: accept a ``source_ami`` not published by the profile's publisher.
        key_file: a private key of the user's instead of a generated one.
        verify: run the test stage before publishing (False: ``--skip-verify``).
        keep_test_instance: keep the passing test instance running (the image's first instance).
        log: where progress lines go.
        dry_run: check everything that can be checked without making anything
            (:func:`~provision.ec2.build.dry_run`) and return the lines checked.

        The other arguments are :class:`~provision.ec2.plan.BuildOptions` fields of the same names.

    Raises:
        ConfigError: the region, the profile record, the caller's address or an option is refused.
        AwsError: an AWS call failed.
    """
    check_region(settings.region)
    name = choose_profile(profile, settings.profile)
    options = BuildOptions.from_settings(
        settings,
        profile=name,
        source_ami=source_ami,
        public=public,
        regions=regions,
        ami_name=ami_name,
        force=force,
        on_error=on_error,
        caller_ip=None if allow_cidr else (caller_ip or discover_caller_ip()),
        allow_cidr=allow_cidr,
        allow_world=allow_world,
        trust_source_owner=trust_source_owner,
        allow_unproven=allow_unproven,
        key_file=key_file,
        verify=verify,
        keep_test_instance=keep_test_instance,
    )
    if dry_run:
        return check_build(options, log=log)
    return build(options, lambda host: provision_builder(host, settings, name, log=log), test_stage=test_stage(settings, log), log=log)
