"""The build itself: :func:`build` strings the stages together (checks, launch, SSH wait, provision,
stop, image, publish, copies, replacement, manifest) and :class:`_Build` carries one build in progress.

Every check that needs nothing made runs first; from then on every temporary resource is registered
with the :class:`~provision.ec2.cleanup.Cleanup` *before* the call that creates it, by a lookup
(name, build-id tag or description) that finds it even when the creating call was interrupted.
Ctrl-C, SIGTERM and SIGHUP all take the same path (:mod:`provision.ec2.signals`): everything is
removed and the build ends with ``KeyboardInterrupt``.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any, Callable, Iterator, Sequence

from ..exceptions import AwsError, ConfigError, ImageTestFailed, ProvisionError
from ..image.updates import Package
from ..profiles import is_proven
from ..progress import heartbeat
from ..steps import Log
from .api import ClientFactory, call, check_credentials, default_client_factory, describe_image, start_session
from .cleanup import TEST_INSTANCE_KINDS, Cleanup, terminate_instances
from .dryrun import ask, probes
from .images import check_can_publish, check_instance_type, describe_source_image, find_source_image, images_named
from .imaging import ImageRef, Imaging, image_request
from .keys import Key, load_user_key, temporary_key
from .launch import create_security_group, import_key_pair, launch_builder
from .manifest import check_manifest_writable, manifest_entry, write_manifest
from .plan import (
    SOURCE_AMI_TAG,
    STAGES,
    BuilderHost,
    BuildOptions,
    BuildPlan,
    BuildResult,
    artifact_id,
    cidr_warning,
    make_plan,
)
from .shapes import resource_tags
from .signals import SignalGuard
from .verify import TestStage, console_tail, findings, wait_console_line, wait_rebooted
from .waits import tcp_probe, wait_instance, wait_ssh

#: Provisions the builder; returns its installed packages (None: not listed).
Provision = Callable[[BuilderHost], Sequence[Package] | None]


def warn_stderr(line: str) -> None:
    """Print a warning line on stderr."""
    print(line, file=sys.stderr, flush=True)


def build(
    options: BuildOptions,
    provision: Provision,
    *,
    session: Any = None,
    clients: ClientFactory | None = None,
    endpoint_url: str | None = None,
    ssh_probe: Callable[[BuilderHost], bool] | None = None,
    on_image_created: Callable[[str, str], None] | None = None,
    test_stage: TestStage | None = None,
    log: Log = print,
    warn: Log = warn_stderr,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    build_id: str | None = None,
) -> BuildResult:
    """Build the AMI: launch a builder, provision it, image it, publish and copy; clean up always.

    Every check that can fail without creating anything runs first (options,
    region, proven profile, credentials, instance type, source image and its owner,
    name collisions, publishability). From then on every temporary resource is
    registered for cleanup before it is created; on any failure, Ctrl-C, SIGTERM or
    SIGHUP it is all removed (including half-made images, copies and their
    snapshots) unless ``options.on_error == "abort"``, which keeps it and logs how to
    reach the builder. The signal handlers are installed for the build only.

    Args:
        options: what to build.
        provision: configures the builder over SSH; gets a :class:`BuilderHost` and
            returns the builder's installed packages (recorded in the manifest).
        session: the boto3 session (credentials, region list); default: a new one.
        clients: region -> EC2 client; default: clients from ``session`` (and ``endpoint_url``).
        endpoint_url: EC2 endpoint for every region (a moto server for the simulation).
        ssh_probe: returns True once the builder answers SSH; default: a TCP probe of port 22.
        on_image_created: called with ``(ami_id, instance_id)`` right after an image is
            requested from the builder (the simulation commits the builder container here).
        test_stage: how the test stage reaches an instance of the new image
            (:mod:`provision.ec2.verify`); None, or ``options.verify`` False, skips the stage.
        log: where progress lines go.
        warn: where a warning line goes (default: stderr).
        sleep: the sleep between checks (tests pass a no-op).
        clock: the clock stages are timed with.
        build_id: the run's uuid (default: a new one).

    Returns:
        The AMI ids by region, the manifest path, the packages and the time each stage took.

    Raises:
        ConfigError: an option, the region, the instance type, the source image or the name is refused.
        AwsError: an AWS call failed (``WaitTimeout`` when a wait ran out).
        KeyboardInterrupt: Ctrl-C, SIGTERM or SIGHUP (:class:`~provision.ec2.signals.Interrupted`).
    """
    with SignalGuard(log) as guard:
        plan, clients = _plan_and_clients(options, session, clients, endpoint_url, warn, build_id)
        run = _Build(plan, clients, guard, log=log, sleep=sleep, clock=clock)
        run.preflight()
        try:
            host = run.launch()
            with run.stage("ssh_wait", f"Waiting for SSH on {host.address}"):
                wait_ssh(host, ssh_probe or tcp_probe(), delay=plan.ssh_delay, attempts=plan.ssh_attempts, sleep=sleep)
                if test_stage is not None and plan.verify:
                    run.builder_key = test_stage.host_key(host)  # before the scrub removes it
            with run.stage("provision", f"Provisioning {host.instance_id}"):
                run.packages = list(provision(host) or ())
            run.stop()
            run.create_image(on_image_created)
            run.verify(test_stage if plan.verify else None, ssh_probe or tcp_probe())
            run.publish()
            run.copy()
            run.replace(on_image_created)
            run.write_manifest()
        except BaseException as exc:
            run.fail(exc)
            raise
        return run.finish()


def dry_run(
    options: BuildOptions,
    *,
    session: Any = None,
    clients: ClientFactory | None = None,
    endpoint_url: str | None = None,
    log: Log = print,
    warn: Log = warn_stderr,
) -> list[str]:
    """Check a build without making anything: the checks :func:`build` runs before it makes anything
    (options, region, proven profile, credentials, instance type, source image, name collisions,
    publishability), then EC2's ``DryRun`` of its first creating calls (:mod:`.dryrun`); the lines checked.

    Raises:
        ConfigError: as :func:`build`, before any AWS call that could make something.
        AwsError: a check or a ``DryRun`` was refused; the message names each refusal.
    """
    plan, clients = _plan_and_clients(options, session, clients, endpoint_url, warn)
    with SignalGuard(log) as guard:
        run = _Build(plan, clients, guard, log=log, sleep=time.sleep, clock=time.monotonic)
        run.preflight()
    checked = [f"source image {run.source_id}, instance type {plan.instance_type}, AMI name {plan.ami_name!r} free"
               + (", publishable" if plan.public else "")]
    refused: list[str] = []
    log("==> Asking EC2 whether the build's calls would succeed (DryRun, nothing is made)")
    for probe in probes(plan, run.source):
        why = ask(run.ec2, probe)
        log(f"    {'ok' if why is None else 'REFUSED'}: {probe.what}" + (f": {why}" if why else ""))
        (checked if why is None else refused).append(probe.what if why is None else why)
    if refused:
        raise AwsError(f"Dry run: EC2 would refuse {len(refused)} of the build's calls: " + "; ".join(refused),
                       hint="grant aws/build-ami-policy.json to these credentials, or fix what the message names")
    return checked


def _plan_and_clients(options: BuildOptions, session: Any, clients: ClientFactory | None, endpoint_url: str | None,
                      warn: Log, build_id: str | None = None) -> tuple[BuildPlan, ClientFactory]:
    """The checks of a build that need no AWS call that could make something: the plan (options,
    region), its SSH width warning, the proven profile; then the credentials and the clients."""
    sess, available = start_session(session)
    plan = make_plan(options, available_regions=available, build_id=build_id)
    warning = cidr_warning(plan.ssh_cidr)
    if warning:
        warn(warning)
    check_proven(plan)
    if clients is None:
        check_credentials(sess)
        clients = default_client_factory(sess, endpoint_url)
    return plan, clients


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
        self,
        plan: BuildPlan,
        clients: ClientFactory,
        guard: SignalGuard,
        *,
        log: Log,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
    ) -> None:
        self.plan = plan
        self.clients = clients
        self.ec2 = clients(plan.region)
        self.guard = guard
        self.log = log
        self.sleep = sleep
        self.clock = clock
        self.cleanup = Cleanup(log)
        self.images = Imaging(plan, clients, self.cleanup, log=log, sleep=sleep)
        self.timings: dict[str, float] = {}
        self.source: dict[str, Any] = {}
        self.key: Key | None = None
        self.host: BuilderHost | None = None
        self.packages: list[Package] = []
        self.key_name = self.group_id = ""
        self.builder_key: str | None = None
        self.verified = False
        self.test_host: BuilderHost | None = None
        #: The passing test instance, kept running (``keep_test_instance``) once the build succeeds.
        self.kept_test: BuilderHost | None = None

    @property
    def source_id(self) -> str:
        """The source AMI id."""
        return str(self.source["ImageId"])

    @property
    def ami_ids(self) -> dict[str, str]:
        """Region -> this build's image there."""
        return self.images.ami_ids

    @contextlib.contextmanager
    def stage(self, name: str, message: str) -> Iterator[None]:
        """Log a stage, show that it runs (the provisioning stage's steps show themselves) and add
        its duration (even when it fails) to ``timings``."""
        self.log(f"==> {message}")
        start = self.clock()
        try:
            with heartbeat(message, log=self.log) if name != "provision" else contextlib.nullcontext():
                yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + (self.clock() - start)

    # --- stages ------------------------------------------------------------------------
    def preflight(self) -> None:
        """Every check that needs the API but creates nothing."""
        plan = self.plan
        self.log(f"==> Checking the build ({plan.profile.display_name}, {plan.instance_type} in {plan.region}, build {plan.build_id})")
        check_instance_type(self.ec2, plan.region, plan.instance_type, plan.profile.architecture)
        if plan.source_ami:
            self.source = describe_source_image(self.ec2, plan.source_ami, plan.region, plan.profile, trust_owner=plan.trust_source_owner)
        else:
            self.source = find_source_image(self.ec2, plan.profile, plan.region)
        self.log(f"    source image {self.source_id} ({self.source.get('Name', '?')}, owner {self.source.get('OwnerId', '?')})")
        for region in plan.regions:
            existing = [i["ImageId"] for i in images_named(self.clients(region), plan.ami_name, region)]
            if existing and not plan.force:
                raise ConfigError(
                    f"An image named {plan.ami_name!r} already exists in {region} ({', '.join(existing)})",
                    hint="choose another AMI name, or pass force to replace it (once the new one is available)",
                )
            self.images.existing[region] = existing
        if plan.public:
            for region in plan.regions:
                check_can_publish(self.clients(region), region, self.log)
        if plan.key_file:
            self.key = load_user_key(plan.key_file)
        check_manifest_writable(plan.manifest_path)
        self.images.tags = {**resource_tags(plan, "image", plan.ami_name), SOURCE_AMI_TAG: self.source_id}

    def launch(self) -> BuilderHost:
        """Key pair, security group (SSH from the caller only), builder; wait until it runs."""
        plan, ec2, cleanup = self.plan, self.ec2, self.cleanup
        with self.stage("launch", f"Launching the builder ({plan.instance_type}, SSH from {plan.ssh_cidr} only)"):
            if self.key is None:
                self.key = temporary_key(plan.build_id, cleanup)
            key_name = self.key_name = import_key_pair(ec2, plan, self.key, cleanup)
            group_id = self.group_id = create_security_group(ec2, plan, cleanup, sleep=self.sleep)
            self.host = launch_builder(ec2, plan, self.source, self.key, key_name, group_id, cleanup, log=self.log, sleep=self.sleep)
        return self.host

    def stop(self) -> None:
        """Stop the builder so the image is taken from a quiet disk."""
        assert self.host is not None
        iid, plan = self.host.instance_id, self.plan
        with self.stage("stop", f"Stopping {iid}"):
            call(self.ec2, f"stop the builder {iid}", "stop_instances", InstanceIds=[iid])
            wait_instance(self.ec2, iid, "stopped", region=plan.region, delay=plan.wait_delay, attempts=plan.wait_attempts, sleep=self.sleep)

    def _from_builder(self, on_image_created: Callable[[str, str], None] | None) -> tuple[Any, Callable[[str], None] | None]:
        """The request that images the stopped builder, and the hook to run once it is requested."""
        assert self.host is not None
        iid = self.host.instance_id
        request = image_request(
            self.ec2, f"create image from {iid}", "create_image", self.images.tags,
            InstanceId=iid, Description=self.plan.description, NoReboot=True,
        )  # fmt: skip
        after = (lambda ami: on_image_created(ami, iid)) if on_image_created is not None else None
        return request, after

    def create_image(self, on_image_created: Callable[[str, str], None] | None) -> None:
        """Image the builder (under a temporary name while one of the final name exists), tag its snapshots at once, wait."""
        plan, images = self.plan, self.images
        name = images.name_for(plan.region)
        with self.stage("create_image", f"Creating image {name!r}"):
            request, after = self._from_builder(on_image_created)
            ref = images.start(plan.region, request, name, after)
            self.log(f"    image {ref.id} requested, its snapshots tagged; waiting for it to be available")
            images.finish(ref)

    def verify(self, test: TestStage | None, probe: Callable[[BuilderHost], bool]) -> None:
        """The test stage (:mod:`provision.ec2.verify`): boot, ready, console, reboot, ready; then the test instance goes.

        Raises:
            ImageTestFailed: a check failed (the message names it, with the console's last lines).
        """
        plan, ref = self.plan, self.images.current[self.plan.region]
        if test is None:
            self.log(f"==> No test stage for {ref.id} (skipped: --skip-verify)")
            return
        assert self.key is not None and ref.id is not None
        with self.stage("verify", f"Testing {ref.id}: a new instance of it must be ready, print the password line, reboot and be ready again"):
            began = self.clock()
            image = describe_image(self.ec2, ref.id, plan.region)
            host = launch_builder(self.ec2, plan, image, self.key, self.key_name, self.group_id, self.cleanup, log=self.log, sleep=self.sleep, role="test")
            self.test_host = host
            read = test.console or self._console
            try:
                wait_ssh(host, probe, delay=plan.ssh_delay, attempts=plan.ssh_attempts, sleep=self.sleep)
                first = test.ready(host)
                self.log(f"    {host.instance_id} is ready; reading its console")
                console = wait_console_line(read, host.instance_id, plan.ssh_attempts, self.sleep, plan.ssh_delay)
                self.log(f"    {host.instance_id}'s console read ({len(console)} characters); rebooting it")
                if test.reboot is not None:
                    test.reboot(host.instance_id)
                else:
                    call(self.ec2, f"reboot the test instance {host.instance_id}", "reboot_instances", InstanceIds=[host.instance_id])
                second = wait_rebooted(test.ready, host, first, plan.ssh_attempts, self.sleep, plan.ssh_delay)
            except ProvisionError as e:  # not ready, no SSH: the test failed, not the build's machinery
                raise ImageTestFailed(f"The test instance {host.instance_id} of {ref.id} failed: {e.message}",
                                      hint=self._console_hint(read, host.instance_id)) from e
            self.log(f"    {host.instance_id} is ready again after its reboot")
            found = findings(self.builder_key, first, second, console)
            if found:
                raise ImageTestFailed(f"The test instance {host.instance_id} of {ref.id} failed: {'; '.join(found)}",
                                      hint=self._console_hint(lambda _: console, host.instance_id))
            self.verified = True
            if plan.keep_test_instance:  # kept only if the whole build succeeds (finish); a later failure removes it
                self.kept_test = host
                self.log(f"    {ref.id} passed its test stage in {self.clock() - began:.0f}s; {host.instance_id} is kept running")
                return
            terminate_instances(self.ec2, [host.instance_id], plan.region, delay=plan.wait_delay, attempts=plan.wait_attempts, sleep=self.sleep)
            self.log(f"    {ref.id} passed its test stage in {self.clock() - began:.0f}s; {host.instance_id} terminated")

    def _console_hint(self, read: Callable[[str], str], instance_id: str) -> str:
        """What a failed test stage tells: the image stays private, and the console's last lines (password redacted)."""
        try:
            tail = console_tail(read(instance_id))
        except ProvisionError as e:
            tail = f"(the console could not be read: {e.message})"
        return f"the image was not published; the last lines of {instance_id}'s console:\n{tail}"

    def _console(self, instance_id: str) -> str:
        """An instance's console output (GetConsoleOutput; botocore decodes EC2's base64)."""
        return str(call(self.ec2, f"read the console of {instance_id}", "get_console_output", InstanceId=instance_id).get("Output") or "")

    def publish(self) -> None:
        """Make the image public when asked (refused for encrypted snapshots)."""
        ref = self.images.current[self.plan.region]
        with self.stage("publish", f"Publishing {ref.id}" if self.plan.public else f"Keeping {ref.id} private"):
            if self.plan.public:
                self.images.publish(ref)
                self.log(f"    {ref.id} is public in {self.plan.region}")

    def _copy_request(self, region: str) -> Any:
        """The request that copies the build region's image into ``region``."""
        plan, ami = self.plan, self.images.current[self.plan.region].id
        return image_request(
            self.clients(region), f"copy {ami} to {region}", "copy_image", self.images.tags,
            Description=plan.description, SourceImageId=ami, SourceRegion=plan.region,
        )  # fmt: skip

    def copy(self) -> None:
        """Start every copy, then wait for each, tag it, require IMDSv2 and publish it when asked."""
        plan, images = self.plan, self.images
        ami = images.current[plan.region].id
        message = f"Copying {ami} to {', '.join(plan.copy_regions)}" if plan.copy_regions else "No copies requested"
        with self.stage("copy", message):
            started: list[ImageRef] = []
            for region in plan.copy_regions:
                ref = images.start(region, self._copy_request(region), images.name_for(region))
                self.log(f"    copy {ref.id} in {region} requested")
                started.append(ref)
            for ref in started:
                images.finish(ref)
                if plan.public:
                    images.publish(ref)
                self.log(f"    {ref.id} is available in {ref.region}" + (" and public" if plan.public else ""))

    def replace(self, on_image_created: Callable[[str, str], None] | None) -> None:
        """``force``: in each region holding an older image of the name, replace it now that the new one is available."""
        plan, images = self.plan, self.images
        regions = [r for r in plan.regions if images.existing.get(r)]
        message = f"Replacing the earlier {plan.ami_name!r} in {', '.join(regions)}" if regions else "Nothing to replace"
        with self.stage("replace", message):
            for region in regions:
                if region == plan.region:
                    request, after = self._from_builder(on_image_created)
                    images.replace(region, request, after)
                else:
                    images.replace(region, self._copy_request(region))

    def write_manifest(self) -> None:
        """Append this build to the manifest, with the builder's packages."""
        plan = self.plan
        with self.stage("manifest", f"Writing the manifest {plan.manifest_path}"):
            entry = manifest_entry(plan, self.ami_ids, self.source_id, int(time.time()), self.packages, verified=self.verified)
            write_manifest(plan.manifest_path, entry, self.log)

    # --- endings -------------------------------------------------------------------------
    def finish(self) -> BuildResult:
        """Keep the images, remove every temporary resource (not to be cut short by a signal), and report.

        Raises:
            Interrupted: a SIGTERM or SIGHUP arrived during this cleanup (the images and the
                manifest are kept: they were complete).
        """
        self.images.keep_all()
        kept = self.cleanup.keep_kinds(TEST_INSTANCE_KINDS) if self.kept_test is not None else []
        with self.guard.shield():
            leftovers = self._run_cleanup("Removing the builder" if kept else "Removing the builder, its key pair and security group")
        if self.kept_test is not None:
            self.log(f"==> Kept the tested instance {self.kept_test.instance_id} of the image: {self.kept_test.ssh_command()}")
            for label, manual in kept:
                self.log(f"    kept {label}" + (f"; remove it with: {manual}" if manual else ""))
        for line in leftovers:
            self.log(f"    could not remove {line}")
        for name in STAGES:
            self.timings.setdefault(name, 0.0)
        self.log(f"==> Built {artifact_id(self.ami_ids)} (manifest {self.plan.manifest_path})")
        self.guard.raise_pending()
        return BuildResult(
            build_id=self.plan.build_id,
            ami_name=self.plan.ami_name,
            ami_ids=dict(self.ami_ids),
            source_ami=self.source_id,
            public=self.plan.public,
            manifest_path=self.plan.manifest_path,
            timings=dict(self.timings),
            leftovers=leftovers,
            packages=list(self.packages),
            test_instance=self.kept_test,
        )

    def fail(self, exc: BaseException) -> None:
        """Undo everything (or, with on_error=abort, keep it and say how to reach it); a signal cannot cut it short."""
        with self.guard.shield():
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
            leftovers = self._run_cleanup("Removing everything this build made")
            self.guard.pending = None  # the build ends with the error that stopped it
            for line in self.images.kept_lines():
                self.log(f"    {line}")
            for line in leftovers:
                self.log(f"    could not remove {line}")
            notes = [*self.images.kept_lines(), *(f"could not remove {line}" for line in leftovers)]
            if notes:
                exc.add_note("\n".join(f"  {line}" for line in notes))

    def _run_cleanup(self, message: str) -> list[str]:
        """Run every registered removal; one line per resource that could not be removed.

        A Ctrl-C that lands between two removals (not inside one, which only skips that
        one) still lets the rest run before it propagates.
        """
        leftovers: list[str] = []
        try:
            with self.stage("cleanup", message):
                leftovers = self.cleanup.run()
        finally:
            if len(self.cleanup):
                leftovers += self.cleanup.run()
        return leftovers
