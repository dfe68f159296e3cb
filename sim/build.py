"""``build.ami --sim``: the real EC2 build (provision/ec2/) closed in a loop against the simulation.

moto is EC2: the build's own ``run_instances`` launches the builder, which the sim boots as a
container at the instance's private IP; the build reaches it over SSH with the temporary key
pair moto holds (the distribution's cloud-init installs it from the metadata, as on EC2);
``create_image`` happens on moto and the sim keeps the stopped builder's disk as that AMI's content, so ``sim.up --ami ID`` boots it and every first-boot job runs as on EC2.

The gate runs twice: on the quiesced builder over SSH (as on EC2, the final audit of
:func:`provision.image.prepare.prepare_image`), and, right after the commit, on the committed
image itself (:func:`sim.image_audit.audit_image`): a finding there fails the build, the
image is forgotten and nothing is published.
"""

from __future__ import annotations

import socket
from typing import Sequence

import boto3

from provision.ec2.build import build
from provision.ec2.build import dry_run as check_build
from provision.ec2.builder import provision_builder, test_stage
from provision.ec2.plan import BuilderHost, BuildOptions, BuildResult
from provision.settings import Settings
from provision.steps import Log

from .aws import FAKE_CREDENTIALS
from .cloud import GATEWAY
from .image_audit import audit_image
from .lifecycle import Sim


def tcp_open(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when ``host:port`` accepts a TCP connection."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def build_ami_sim(
    settings: Settings,
    *,
    public: bool = False,
    regions: Sequence[str] = (),
    ami_name: str | None = None,
    force: bool = False,
    on_error: str = "cleanup",
    profile: str | None = None,
    log: Log = print,
    dry_run: bool = False,
    verify: bool = True,
    keep_test_instance: bool = False,
) -> BuildResult | list[str]:
    """Run the whole AMI build against the simulation; return the build result (AMI ids, manifest).

    ``dry_run``: only check it (:func:`provision.ec2.build.dry_run`); return the lines checked.
    ``keep_test_instance``: the passing test instance becomes the sim's instance (``sim.status``,
    ``sim.reboot``...); the build then logs in with the sim's own key (``--key``, as a user would
    pass theirs), so the sim's ``ssh`` line reaches it.
    """
    sim = Sim(settings, log=log)
    source = sim.ensure_infra(profile)
    profile = sim.state.profile
    session = boto3.session.Session(
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=settings.region,
    )
    options = BuildOptions.from_settings(
        settings,
        profile=profile,
        source_ami=source,
        trust_source_owner=True,  # the sim registers its own source image: its owner is the sim's account
        public=public,
        regions=list(regions),
        ami_name=ami_name,
        force=force,
        on_error=on_error,
        verify=verify,
        keep_test_instance=keep_test_instance,
        key_file=str(sim.state.key_path) if keep_test_instance else None,
        caller_ip=GATEWAY,  # the host, as the instance sees it
        subnet_id=sim.state.subnet_id,
        ssh_private=True,
        # The proven-profile gate guards builds on AWS; a build in the simulation is itself a
        # simulation run (an instance of its AMI that comes up ready records the profile as proven).
        allow_unproven=True,
        wait_delay=1.0,
        ssh_delay=1.0,
        ssh_attempts=120,
    )

    def probe(host: BuilderHost) -> bool:
        sim.boot_instance(host.instance_id)  # EC2 boots the instance; in the sim, this does
        return tcp_open(host.address, host.port)

    def image_and_audit(ami: str, instance_id: str) -> None:
        sim.image_instance(instance_id, ami)  # EC2 snapshots the stopped builder's disks; in the sim, this does
        audit_image(sim.docker, sim.state, ami, settings, log=log)  # the gate, on what became the AMI

    if dry_run:
        return check_build(options, session=session, endpoint_url=sim.state.endpoint, log=log)
    # EC2 reboots an instance on RebootInstances; in the sim, restarting its container does.
    tests = test_stage(settings, log, reboot=lambda iid: sim.instances.reboot(iid))
    try:
        result = build(
            options, lambda host: provision_builder(host, settings, profile, log=log), session=session, endpoint_url=sim.state.endpoint,
            ssh_probe=probe, on_image_created=image_and_audit, test_stage=tests, log=log,
        )
        if result.test_instance is not None:
            sim.adopt(result.test_instance.instance_id)
        return result
    finally:
        if on_error != "abort":
            for iid in sim.reconcile():
                log(f"removed the container of terminated instance {iid}")

