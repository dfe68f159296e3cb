"""The boot agent: the jobs that run on the instance at every boot or once per instance.

Installed into the image with one systemd unit per job (see :mod:`provision.units`),
it runs under the distribution's ``/usr/bin/python3`` with the standard library only::

    python3 -m provision.boot run hostname
    python3 -m provision.boot status

Per-boot jobs run at every boot and do nothing when nothing changed. Per-instance
jobs run once for each new instance-id: the id they last ran for is recorded under
``<state_dir>/instance/<job>``; a job that fails half-way is not recorded and runs
again at the next boot. Each job logs one line per action to stdout (the journal).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable

from .exceptions import MetadataError, ProvisionError
from .paths import AGENT_UNITS, COMPUTE_API_UNITS
from .settings import Settings, load_installed
from .steps import StepResult
from .target import Target
from .target.local import LocalTarget

from .paths import AGENT_DIR, SETTINGS_PATH  # noqa: E402,F401 (re-exported for the agent's callers)


def log(message: str) -> None:
    """Log one line to stdout (the journal, when run from a unit)."""
    print(message, flush=True)


@dataclass
class BootContext:
    """What a job needs: where to act, the settings, and this instance's metadata."""

    target: Target
    settings: Settings
    info: object  # provision.metadata.InstanceInfo
    metadata_fresh: bool
    log: Callable[[str], None] = log

    @property
    def state_dir(self) -> str:
        """Directory holding the agent's state on the instance."""
        return self.settings.state_dir


JobFn = Callable[[BootContext], StepResult]


@dataclass(frozen=True)
class BootJob:
    """One boot job and the systemd ordering its unit needs."""

    name: str
    per: str  # "boot" | "instance"
    description: str
    fn: str  # "module:function", imported when the job runs
    after: tuple[str, ...] = ()
    before: tuple[str, ...] = ()
    wants: tuple[str, ...] = ()

    @property
    def unit(self) -> str:
        """The systemd unit name of this job."""
        return f"coa-{self.name}.service"


def jobs(settings: Settings) -> list[BootJob]:
    """The boot jobs in the order they run, with their unit ordering."""
    ceph = settings.ceph
    ceph_units = (
        f"ceph-mon@{ceph.mon_id}.service",
        f"ceph-mgr@{ceph.mgr_id}.service",
        *(f"ceph-osd@{i}.service" for i in range(ceph.osd_count)),
    )
    return [
        BootJob(
            "hostname",
            "boot",
            "Set the static hostname and /etc/hosts from the instance metadata",
            "provision.boot_jobs:hostname_job",
            after=("network-online.target",),
            wants=("network-online.target",),
            before=("ssh.service", *ceph_units),
        ),
        BootJob(
            "ceph-readdress",
            "boot",
            "Re-address the Ceph monitor when the instance's IP changed",
            "provision.boot_jobs:readdress_job",
            after=("coa-hostname.service",),
            before=(*ceph_units, "ceph.target"),
        ),
        BootJob(
            "ceph-keys",
            "instance",
            "Give this instance its own cephx keys (once per instance-id)",
            "provision.boot_jobs:rotate_keys_job",
            after=(*ceph_units,),
            wants=(*ceph_units,),
        ),
        # OpenStack (provision/openstack_boot.py). Unit names of both profiles are listed:
        # ordering against a unit that is not installed is ignored (Debian serves Keystone
        # and cinder-api with uWSGI units of their own, Ubuntu from apache2).
        BootJob(
            "openstack-secrets",
            "instance",
            "Give this instance its own OpenStack passwords, Fernet keys and libvirt secret (once per instance-id)",
            "provision.boot_jobs:openstack_secrets_job",
            after=("coa-ceph-keys.service", "mariadb.service", "rabbitmq-server.service", "libvirtd.service"),
            before=(*OPENSTACK_UNITS, *AGENT_UNITS, "coa-openstack-endpoints.service"),
        ),
        BootJob(
            "openstack-endpoints",
            "boot",
            "Point the OpenStack configuration and catalog at this boot's address and public name",
            "provision.boot_jobs:openstack_endpoints_job",
            after=("coa-hostname.service", "coa-openstack-secrets.service", "mariadb.service", "keystone.service", "apache2.service"),
            before=(*(u for u in OPENSTACK_UNITS if u not in ("keystone.service", "apache2.service")), *AGENT_UNITS, "coa-openstack-boot-volume.service"),
        ),
        BootJob(
            "openstack-boot-volume",
            "instance",
            "Create this instance's bootable volume from the golden image, exactly once",
            "provision.boot_jobs:openstack_boot_volume_job",
            after=("coa-openstack-endpoints.service", *OPENSTACK_UNITS, *ceph_units),
        ),
        BootJob(
            "openstack-demo-server",
            "boot",
            "Keep one demo server booted by this instance from its bootable volume (never a second one)",
            "provision.boot_jobs:openstack_demo_server_job",
            after=("coa-openstack-boot-volume.service", *OPENSTACK_UNITS, *COMPUTE_UNITS),
        ),
    ]


#: The OpenStack units the OpenStack boot jobs are ordered against (Debian's and Ubuntu's names).
OPENSTACK_UNITS = (
    "keystone.service",
    "apache2.service",
    "glance-api.service",
    "cinder-api.service",
    "cinder-scheduler.service",
    "cinder-volume.service",
    *COMPUTE_API_UNITS,
)
#: Units the demo server needs beyond the APIs (the hypervisor side and the guests' network).
COMPUTE_UNITS = ("libvirtd.service", *AGENT_UNITS, "ceph-openstack-ami-guest-net.service")


#: The settings provisioning wrote (kept under this name for the callers of the boot agent).
load_settings = load_installed


def read_metadata(settings: Settings) -> tuple[object, bool]:
    """This instance's metadata, retried within a bound; the last-known copy when it stays down.

    Returns:
        (info, fresh): ``fresh`` is False when the last-known copy was used.

    Raises:
        MetadataError: the service is down and no copy was ever saved.
    """
    from .metadata import InstanceInfo, MetadataClient

    cache = os.path.join(settings.state_dir, "last-metadata.json")
    client = MetadataClient.from_settings(settings, retries=settings.metadata_retries, backoff=settings.metadata_backoff_s)
    attempts, delay = max(1, settings.boot_metadata_attempts), settings.boot_metadata_delay_s
    error: MetadataError | None = None
    for attempt in range(1, attempts + 1):
        try:
            info = client.snapshot()
        except MetadataError as e:
            error = e
            log(f"metadata: attempt {attempt}/{attempts} failed: {e.message}")
            if attempt < attempts:
                time.sleep(delay)
            continue
        os.makedirs(settings.state_dir, exist_ok=True)
        tmp = cache + ".tmp"
        with open(tmp, "w") as f:
            json.dump(dataclasses.asdict(info), f)
        os.replace(tmp, cache)
        return info, True
    try:
        with open(cache) as f:
            info = InstanceInfo(**json.load(f))
    except FileNotFoundError:
        assert error is not None
        raise error
    log(f"metadata: unavailable after {attempts} attempts; using the last-known configuration (instance {info.instance_id})")
    return info, False


def _load(fn: str) -> JobFn:
    import importlib

    module, _, name = fn.partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def _marker(settings: Settings, job: BootJob) -> str:
    return os.path.join(settings.state_dir, "instance", job.name)


def run_job(
    name: str,
    settings: Settings | None = None,
    target: Target | None = None,
    job_list: list[BootJob] | None = None,
) -> StepResult:
    """Run one boot job (per-instance jobs only when this instance has not run it yet)."""
    settings = settings or load_settings()
    target = target or LocalTarget()
    by_name = {j.name: j for j in (job_list if job_list is not None else jobs(settings))}
    if name not in by_name:
        raise ProvisionError(f"Unknown boot job {name!r}", hint=f"jobs: {', '.join(by_name)}")
    job = by_name[name]
    info, fresh = read_metadata(settings)
    ctx = BootContext(target, settings, info, fresh)
    marker = _marker(settings, job)
    instance_id = getattr(info, "instance_id")
    if job.per == "instance":
        done_for = target.read(marker).decode().strip() if target.exists(marker) else None
        if done_for == instance_id:
            result = StepResult(job.name, False, f"already done for instance {instance_id}")
            log(result.line())
            return result
        if not fresh:
            result = StepResult(job.name, False, "metadata unavailable: cannot tell whether this is a new instance; skipped")
            log(result.line())
            return result
    start = time.monotonic()
    result = _load(job.fn)(ctx)
    result = StepResult(result.name, result.changed, result.detail, time.monotonic() - start)
    if job.per == "instance":
        target.put(marker, instance_id + "\n", mode=0o644)
    log(result.line())
    _record_timing(settings, job, result)
    return result


def _record_timing(settings: Settings, job: BootJob, result: StepResult) -> None:
    """Append the job's outcome to the boot log read by status and the benchmarks."""
    path = os.path.join(settings.state_dir, "boot-log.jsonl")
    os.makedirs(settings.state_dir, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps({"job": job.name, "changed": result.changed, "detail": result.detail,
                            "seconds": round(result.seconds, 3), "at": time.time()}) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Command line of the boot agent."""
    parser = argparse.ArgumentParser(prog="python3 -m provision.boot", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run one boot job")
    r.add_argument("job")
    sub.add_parser("list", help="list the boot jobs in order")
    args = parser.parse_args(argv)
    settings = load_settings()
    if args.cmd == "list":
        for j in jobs(settings):
            print(f"{j.unit:28} per-{j.per:8} {j.description}")
        return 0
    try:
        run_job(args.job, settings)
    except ProvisionError as e:
        log(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
