"""The Packer-style manifest (``build/manifest.json``): one entry per build (with the image's
packages), appended atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..exceptions import ConfigError
from ..image.updates import Package
from ..steps import Log
from .plan import BUILDER_TYPE, BuildPlan, artifact_id


def manifest_entry(
    plan: BuildPlan, ami_ids: Mapping[str, str], source_ami: str, build_time: int, packages: Sequence[Package] = (), verified: bool = False
) -> dict[str, Any]:
    """One ``builds[]`` entry in Packer's manifest shape, plus ``packages``: what the image has installed.

    ``packages`` lists the builder's packages after the updates and the provisioning (name,
    version, architecture; sorted), so a build can be compared with another or checked
    against security advisories. ``verified`` says the image passed the build's test stage
    (``custom_data.verified``: ``true``/``false``).
    """
    custom = {
        "ami_name": plan.ami_name,
        "profile": plan.profile.name,
        "source_ami": source_ami,
        "instance_type": plan.instance_type,
        "region": plan.region,
        "regions": ",".join(plan.regions),
        "public": "true" if plan.public else "false",
        "build_id": plan.build_id,
        "verified": "true" if verified else "false",
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
        "packages": [p._asdict() for p in packages],
    }


def merge_manifest(existing: Mapping[str, Any] | None, entry: Mapping[str, Any]) -> dict[str, Any]:
    """Append ``entry`` to a manifest (as Packer does) and point ``last_run_uuid`` at it."""
    builds = list(existing.get("builds", [])) if existing and isinstance(existing.get("builds"), list) else []
    builds.append(dict(entry))
    return {"builds": builds, "last_run_uuid": entry["packer_run_uuid"]}


def write_manifest(path: str, entry: Mapping[str, Any], log: Log) -> None:
    """Append ``entry`` to the manifest at ``path`` (written atomically; an unreadable one is started anew)."""
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


def check_manifest_writable(path: str) -> None:
    """Refuse, before anything is built, a manifest path that cannot be written.

    Raises:
        ConfigError: its folder cannot be made or written to.
    """
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p.parent, prefix=f".{p.name}.probe"):
            pass
    except OSError as e:
        raise ConfigError(f"Cannot write the manifest {p}: {e.strerror}", hint="choose a writable manifest path") from e
