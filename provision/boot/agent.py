"""Install the boot agent on a host: its code, its settings and one unit per boot job."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from ..cluster.controller import JOIN_UNIT, render_join_unit
from ..hostname import CLOUD_INIT_CFG, render_cloud_init_cfg
from ..paths import AGENT_DIR, SETTINGS_PATH, UNIT_DIR
from ..settings import Settings
from ..steps import StepResult, apt_install, missing_packages
from ..target import Target
from . import fence
from .fence import render_fence, render_unfence
from .jobs import jobs
from .units import render_unit

#: Subpackages the agent does not install: they run on the build host only (boto3).
HOST_ONLY = ("ec2",)


def agent_files(settings: Settings) -> dict[str, tuple[bytes, int]]:
    """Every file the agent installs: path -> (content, mode)."""
    src = Path(__file__).resolve().parent.parent  # the provision package
    files: dict[str, tuple[bytes, int]] = {}
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src)
        if rel.parts[0] not in HOST_ONLY:
            files[f"{AGENT_DIR}/provision/{rel.as_posix()}"] = (path.read_bytes(), 0o644)
    files[fence.FENCE_RULES] = (render_fence().encode(), 0o644)
    files[fence.UNFENCE_RULES] = (render_unfence().encode(), 0o644)
    files[CLOUD_INIT_CFG] = (render_cloud_init_cfg().encode(), 0o644)
    files[SETTINGS_PATH] = ((json.dumps(dataclasses.asdict(settings), indent=2, sort_keys=True) + "\n").encode(), 0o644)
    for job in jobs(settings):
        files[f"{UNIT_DIR}/{job.unit}"] = (render_unit(job).encode(), 0o644)
    # Not a boot job: never enabled, started only by issuing a join token (provision/cluster/).
    files[f"{UNIT_DIR}/{JOIN_UNIT}"] = (render_join_unit().encode(), 0o644)
    return files


class BootAgentStep:
    """Provisioning step: install or update the boot agent and enable its units."""

    name = "boot-agent"

    def apply(self, target: Target, settings: Settings) -> StepResult:
        files = agent_files(settings)
        changed = [path for path, (data, mode) in files.items() if target.put(path, data, mode=mode)]
        # Remove modules an older agent installed that this one no longer has (an earlier layout's).
        code = f"{AGENT_DIR}/provision"
        installed = target.run(["find", code, "-name", "*.py", "-type", "f"], check=False).stdout.split()
        for path in sorted(set(installed) - set(files)):
            if target.remove(path):
                changed.append(path)
        # Remove units of jobs that no longer exist.
        wanted = {job.unit for job in jobs(settings)} | {JOIN_UNIT}
        listing = target.run("ls %s", UNIT_DIR, check=False).stdout.split()
        for unit in listing:
            if unit.startswith("coa-") and unit.endswith(".service") and unit not in wanted:
                target.run("systemctl disable %s", unit, check=False)
                if target.remove(f"{UNIT_DIR}/{unit}"):
                    changed.append(unit)
        units = [job.unit for job in jobs(settings)]
        enabled = target.run(["systemctl", "is-enabled", *units], check=False).stdout.split()
        if len(enabled) != len(units) or any(state != "enabled" for state in enabled):
            target.run(["systemctl", "enable", *units])
            changed.append("enabled units")
        if changed:
            target.run("systemctl daemon-reload")
            return StepResult(self.name, True, f"{len(changed)} file(s) updated: {', '.join(os.path.basename(c) for c in changed[:6])}")
        return StepResult(self.name, False, "agent, settings and units already current")


def install_fence_tools(target: Target, settings: Settings) -> tuple[bool, str]:
    """Install ``nft`` (Debian's and Ubuntu's ``nftables``), which the first-boot fence needs."""
    if not missing_packages(target, [fence.PACKAGE]):
        return False, f"{fence.PACKAGE} installed"
    updated = apt_install(target, [fence.PACKAGE], 600)
    return True, f"installed {fence.PACKAGE}" + (" after apt-get update" if updated else "")
