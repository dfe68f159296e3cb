"""The host's side of ``python3 -m provision.cluster``: run one of its commands on the controller through a Target."""

from __future__ import annotations

import json
from typing import Any

from ..exceptions import CommandFailed, JoinError
from ..paths import agent_argv
from ..systemd import bounded
from ..target import Target

MODULE = "provision.cluster"


def run(target: Target, *args: str, timeout: int = 120) -> dict[str, Any]:
    """Run ``python3 -m provision.cluster ARGS`` on ``target`` (as root); the JSON line it printed.

    Raises:
        JoinError: the controller refused (its sentence).
        CommandFailed: the command printed no JSON (the boot agent is not installed there).
    """
    r = target.run(bounded(agent_argv(MODULE, *args), timeout), check=False)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise CommandFailed(target.name, r.command, r.exit_code, r.stdout, r.stderr)
    data: dict[str, Any] = json.loads(lines[-1])
    if data.get("error"):
        raise JoinError(f"{args[0]} on {target.name}: {data['error']}")
    return data


def issue(target: Target, ttl_s: int | None = None) -> dict[str, Any]:
    """A new join token from the controller behind ``target``: ``{"token", "id", "node_name", "expires"}``."""
    return run(target, "token", *(["--ttl", str(ttl_s)] if ttl_s else []))
