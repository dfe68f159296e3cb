"""The build itself: :func:`build` strings the stages together (checks, launch, SSH wait, provision,
stop, image, publish, copies, manifest) and :class:`_Build` carries one build in progress.

Every check that needs nothing made runs first; from then on every temporary resource is registered
with the :class:`~provision.ec2.cleanup.Cleanup` *before* the call that creates it, by a lookup
(name or build-id tag) that finds it even when the creating call was interrupted.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from ..exceptions import ConfigError
from ..profiles import is_proven
from ..steps import Log
from .api import ClientFactory, call, check_credentials, default_client_factory, describe_image, start_session
from .cleanup import Cleanup, delete_image, images_of_build
from .images import (
    check_can_publish,
    check_instance_type,
    describe_source_image,
    find_source_image,
    images_named,
    publish_image,
    replace_existing,
    require_imds_v2,
    tag_image_and_snapshots,
)
from .keys import Key, load_user_key, temporary_key
from .launch import create_security_group, import_key_pair, launch_builder
from .manifest import check_manifest_writable, manifest_entry, write_manifest
from .plan import SOURCE_AMI_TAG, STAGES, BuilderHost, BuildOptions, BuildPlan, BuildResult, artifact_id, make_plan
from .shapes import image_snapshot_ids, resource_tags, tag_specifications
from .waits import tcp_probe, wait_image_available, wait_instance, wait_ssh


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
    sess, available = start_session(session)
    plan = make_plan(options, available_regions=available, build_id=build_id)
    check_proven(plan)
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
        write_manifest(plan.manifest_path, manifest_entry(plan, run.ami_ids, run.source_id, int(time.time())), log)
    except BaseException as exc:
        run.fail(exc)
        raise
    return run.finish()


def check_proven(plan: BuildPlan) -> None:
    """Refuse a profile no simulation run has proven, unless the plan allows it.

    Raises:
        ConfigError: the profile has no entry in the plan's proven record.
    """
    if not plan.allow_unproven and not is_proven(plan.profile, plan.proven_path):
        raise ConfigError(
            f"Profile {plan.profile.name} has not been proven by a simulation run (no entry in {plan.proven_path})",
            hint=f"run the simulation for it first (`invoke sim.up --profile {plan.profile.name}`), or allow an unproven profile (--allow-unproven)",
        )


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
        self.key: Key | None = None
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
        """Wait for an instance to reach ``want``, within the plan's bounds."""
        wait_instance(
            client, instance_id, want, region=region, delay=self.plan.wait_delay, attempts=self.plan.wait_attempts, sleep=self.sleep
        )

    def wait_image(self, client: Any, ami_id: str, region: str) -> None:
        """Wait for an image to become available, within the plan's bounds."""
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
            self.key = load_user_key(plan.key_file)
        check_manifest_writable(plan.manifest_path)
        self.image_tags = {**resource_tags(plan, "image", plan.ami_name), SOURCE_AMI_TAG: self.source_id}

    def launch(self) -> BuilderHost:
        """Key pair, security group (SSH from the caller only), builder; wait until it runs."""
        plan, ec2, cleanup = self.plan, self.ec2, self.cleanup
        with self.stage("launch", f"Launching the builder ({plan.instance_type}, SSH from {plan.ssh_cidr} only)"):
            if self.key is None:
                self.key = temporary_key(plan.build_id, cleanup)
            key_name = import_key_pair(ec2, plan, self.key, cleanup)
            group_id = create_security_group(ec2, plan, cleanup, sleep=self.sleep)
            self.host = launch_builder(ec2, plan, self.source, self.key, key_name, group_id, cleanup, log=self.log, sleep=self.sleep)
        return self.host

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
                replace_existing(ec2, plan.ami_name, plan.region, self.log)
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
                    replace_existing(rc, plan.ami_name, region, self.log)
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
