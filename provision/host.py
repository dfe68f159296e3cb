"""Provision a host: the one entry point shared by ``sim.up``, ``provision.host`` and ``build.ami``."""

from __future__ import annotations

from functools import partial

from .boot.agent import BootAgentStep, install_fence_tools
from .boot.jobs import HOSTNAME_UNIT, jobs
from .ceph import steps as ceph_steps
from .openstack import provisioning as openstack
from .paths import agent_argv
from .progress import heartbeat
from .settings import Settings
from .steps import FnStep, Log, Report, Step, run_steps
from .target import Target


def instance_ipv4(target: Target) -> str:
    """The instance's local IPv4, read from the metadata service by the agent on the target."""
    return target.run(agent_argv("provision.metadata", "local-ipv4"), timeout=60).stdout.strip()


def start_boot_units(target: Target, settings: Settings) -> None:
    """Start the boot jobs' units in order (each is a no-op when already done)."""
    for job in jobs(settings):
        target.run(["systemctl", "start", job.unit], timeout=900)


def content_steps(settings: Settings, profile: str, ip: str) -> list[Step]:
    """The steps that install and configure the AMI's content (Ceph, then later OpenStack)."""
    return [*ceph_steps.steps(settings, profile, ip), *openstack.steps(settings, profile, ip)]


def provision(target: Target, settings: Settings, profile: str, log: Log = print) -> Report:
    """Provision ``target`` into the AMI's content; idempotent: a second run changes nothing.

    Installs the boot agent and runs its first per-boot job (hostname), then the content
    steps, then starts the remaining boot units so the host ends as a booted instance would.
    """
    around = partial(heartbeat, log=log)
    report = run_steps(target, settings, [BootAgentStep(), FnStep("boot.nftables", install_fence_tools)], log, around)
    target.run(["systemctl", "start", HOSTNAME_UNIT], timeout=300)
    ip = instance_ipv4(target)
    log(f"instance address from metadata: {ip}")
    more = run_steps(target, settings, content_steps(settings, profile, ip), log, around)
    report.results.extend(more.results)
    start_boot_units(target, settings)
    log(f"provisioned: {len(report.results)} steps, {report.changed} changed, {report.seconds:.0f}s")
    return report
