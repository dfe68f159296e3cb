"""Run one boot job: read this instance's metadata, decide whether the job is due, run it, record it.

Per-instance jobs run once for each new instance-id: the id they last ran for is recorded under
``<state_dir>/instance/<job>``; a job that fails half-way is not recorded and runs again at the
next boot. Each job logs one line per action to stdout (the journal).
"""

from __future__ import annotations

import json
import os
import time

from ..exceptions import MetadataError, ProvisionError
from ..instance import InstanceInfo
from ..metadata import MetadataClient
from ..paths import BOOT_LOG_NAME, LAST_METADATA_NAME, METADATA_DOWN_NAME
from ..settings import Settings, load_installed
from ..steps import StepResult
from ..target import Target
from ..target.local import LocalTarget
from .context import BootContext, BootJob, log
from .firstboot import Marker, cache_text, decide, local_info, parse_cache, parse_marker, read_machine_id
from .jobs import jobs
from .netinfo import local_ipv4


def read_metadata(settings: Settings, target: Target, machine_id: str) -> tuple[InstanceInfo, str]:
    """This instance's metadata, retried within a bound; where it came from: ``metadata``, ``last-known`` or ``local``.

    When the service stays down, the last-known copy is used if it was read on this machine
    (same machine-id); on a new machine (an image's first boot) an old copy describes another
    instance, so only what the instance knows of itself is used: its own IPv4, no public name.

    Raises:
        MetadataError: the service is down and the instance has no IPv4 address of its own either.
    """
    cache = os.path.join(settings.state_dir, LAST_METADATA_NAME)
    down_mark = os.path.join(settings.run_dir, METADATA_DOWN_NAME)
    client = MetadataClient.from_settings(settings, retries=settings.metadata_retries, backoff=settings.metadata_backoff_s)
    attempts, delay = max(1, settings.boot_metadata_attempts), settings.boot_metadata_delay_s
    if os.path.exists(down_mark):
        # An earlier job of this boot waited out the whole bound: one more try, not another wait.
        log("metadata: the service did not answer earlier at this boot; trying once")
        attempts = 1
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
        tmp = f"{cache}.tmp-{os.getpid()}"  # jobs of one boot run in parallel: each its own temporary file
        with open(tmp, "w") as f:
            f.write(cache_text(info, machine_id))
        os.replace(tmp, cache)
        if os.path.exists(down_mark):
            os.remove(down_mark)
        return info, "metadata"
    assert error is not None
    os.makedirs(settings.run_dir, exist_ok=True)
    with open(down_mark, "w") as f:
        f.write(f"{time.time():.0f}\n")
    try:
        with open(cache) as f:
            info, cached_on = parse_cache(f.read())
        if cached_on == machine_id:
            log(f"metadata: unavailable after {attempts} attempts; using the last-known configuration (instance {info.instance_id})")
            return info, "last-known"
        log(f"metadata: unavailable after {attempts} attempts; the last-known copy was read on another machine (instance {info.instance_id}): not used")
    except (FileNotFoundError, ValueError, TypeError):
        pass
    ip = local_ipv4(target, settings)
    if not ip:
        raise error from None
    log(f"metadata: unavailable after {attempts} attempts; using what this instance knows of itself (address {ip}, no public name)")
    return local_info(machine_id, ip, settings.region), "local"


def marker_path(settings: Settings, job: BootJob) -> str:
    """Where a per-instance job records the instance-id it last ran for."""
    return os.path.join(settings.state_dir, "instance", job.name)


def run_job(
    name: str,
    settings: Settings | None = None,
    target: Target | None = None,
    job_list: list[BootJob] | None = None,
    machine_id: str | None = None,
) -> StepResult:
    """Run one boot job (a per-instance job only when this is a new instance, see :func:`firstboot.decide`)."""
    settings = settings or load_installed()
    target = target or LocalTarget()
    by_name = {j.name: j for j in (job_list if job_list is not None else jobs(settings))}
    if name not in by_name:
        raise ProvisionError(f"Unknown boot job {name!r}", hint=f"jobs: {', '.join(by_name)}")
    job = by_name[name]
    if job.fn is None:
        raise ProvisionError(f"Boot job {name!r} runs as a command in its unit", hint=f"systemctl start {job.unit}")
    machine_id = read_machine_id() if machine_id is None else machine_id
    info, source = read_metadata(settings, target, machine_id)
    marker = marker_path(settings, job)
    instance_id = info.instance_id if source == "metadata" else None
    if job.per == "instance":
        decision = decide(read_marker(target, marker), machine_id, instance_id)
        if not decision.due:
            why = decision.why if decision.due is False else decision.why + "; skipped"
            result = StepResult(job.name, False, why)
            log(result.line())
            return result
        log(f"{job.name}: a new instance ({decision.why})")
    start = time.monotonic()
    done = frozenset(j.name for j in by_name.values() if j.per == "instance" and j is not job
                     and decide(read_marker(target, marker_path(settings, j)), machine_id, instance_id).due is False)
    result = job.fn(BootContext(target, settings, info, source, done_here=done))
    result = StepResult(result.name, result.changed, result.detail, time.monotonic() - start)
    if job.per == "instance":
        target.put(marker, Marker(info.instance_id, machine_id).text(), mode=0o644)
    log(result.line())
    record_timing(settings, job, result)
    return result


def read_marker(target: Target, path: str) -> Marker | None:
    """The marker a per-instance job left, or None when it never completed on this disk."""
    return parse_marker(target.read(path).decode()) if target.exists(path) else None


def record_timing(settings: Settings, job: BootJob, result: StepResult) -> None:
    """Append the job's outcome to the boot log read by status and the benchmarks."""
    path = os.path.join(settings.state_dir, BOOT_LOG_NAME)
    os.makedirs(settings.state_dir, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps({"job": job.name, "changed": result.changed, "detail": result.detail,
                            "seconds": round(result.seconds, 3), "at": time.time()}) + "\n")
