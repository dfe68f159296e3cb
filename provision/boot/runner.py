"""Run one boot job: read this instance's metadata, decide whether the job is due, run it, record it.

Per-instance jobs run once for each new instance-id: the id they last ran for is recorded under
``<state_dir>/instance/<job>``; a job that fails half-way is not recorded and runs again at the
next boot. Each job logs one line per action to stdout (the journal).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

from ..exceptions import MetadataError, ProvisionError
from ..instance import InstanceInfo
from ..metadata import MetadataClient
from ..paths import BOOT_LOG_NAME, LAST_METADATA_NAME
from ..settings import Settings, load_installed
from ..steps import StepResult
from ..target import Target
from ..target.local import LocalTarget
from .context import BootContext, BootJob, log
from .jobs import jobs


def read_metadata(settings: Settings) -> tuple[InstanceInfo, bool]:
    """This instance's metadata, retried within a bound; the last-known copy when it stays down.

    Returns:
        (info, fresh): ``fresh`` is False when the last-known copy was used.

    Raises:
        MetadataError: the service is down and no copy was ever saved.
    """
    cache = os.path.join(settings.state_dir, LAST_METADATA_NAME)
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
        raise error from None
    log(f"metadata: unavailable after {attempts} attempts; using the last-known configuration (instance {info.instance_id})")
    return info, False


def marker_path(settings: Settings, job: BootJob) -> str:
    """Where a per-instance job records the instance-id it last ran for."""
    return os.path.join(settings.state_dir, "instance", job.name)


def run_job(
    name: str,
    settings: Settings | None = None,
    target: Target | None = None,
    job_list: list[BootJob] | None = None,
) -> StepResult:
    """Run one boot job (per-instance jobs only when this instance has not run it yet)."""
    settings = settings or load_installed()
    target = target or LocalTarget()
    by_name = {j.name: j for j in (job_list if job_list is not None else jobs(settings))}
    if name not in by_name:
        raise ProvisionError(f"Unknown boot job {name!r}", hint=f"jobs: {', '.join(by_name)}")
    job = by_name[name]
    info, fresh = read_metadata(settings)
    marker = marker_path(settings, job)
    if job.per == "instance":
        done_for = target.read(marker).decode().strip() if target.exists(marker) else None
        if done_for == info.instance_id:
            result = StepResult(job.name, False, f"already done for instance {info.instance_id}")
            log(result.line())
            return result
        if not fresh:
            result = StepResult(job.name, False, "metadata unavailable: cannot tell whether this is a new instance; skipped")
            log(result.line())
            return result
    start = time.monotonic()
    result = job.fn(BootContext(target, settings, info, fresh))
    result = StepResult(result.name, result.changed, result.detail, time.monotonic() - start)
    if job.per == "instance":
        target.put(marker, info.instance_id + "\n", mode=0o644)
    log(result.line())
    record_timing(settings, job, result)
    return result


def record_timing(settings: Settings, job: BootJob, result: StepResult) -> None:
    """Append the job's outcome to the boot log read by status and the benchmarks."""
    path = os.path.join(settings.state_dir, BOOT_LOG_NAME)
    os.makedirs(settings.state_dir, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps({"job": job.name, "changed": result.changed, "detail": result.detail,
                            "seconds": round(result.seconds, 3), "at": time.time()}) + "\n")
