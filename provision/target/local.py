"""LocalTarget: commands run on this host (the boot agent on the instance, unit tests)."""

from __future__ import annotations

import os
import subprocess
from typing import Any

from .base import Target


class LocalTarget(Target):
    """Run commands with ``sh -c`` on this machine."""

    name = "local"

    def _exec(self, command: str, stdin: bytes | None, timeout: float | None) -> tuple[int, bytes, bytes]:
        try:
            p = subprocess.run(["sh", "-c", command], input=stdin, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            return 124, e.stdout or b"", (e.stderr or b"") + f"timed out after {timeout}s".encode()
        return p.returncode, p.stdout, p.stderr

    def _write(self, path: str, data: bytes) -> None:
        with open(path, "wb") as f:
            f.write(data)

    def _read(self, path: str) -> bytes:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"local:{path}")
        with open(path, "rb") as f:
            return f.read()


def from_spec(spec: str, **options: Any) -> LocalTarget:
    """The ``local`` target (options are ignored)."""
    return LocalTarget()
