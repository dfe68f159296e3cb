"""The Target interface: run a command, put a file, read a file — on any host.

Every provisioning step is written against :class:`Target`; the backends
(:mod:`provision.target.local`, :mod:`provision.target.docker`,
:mod:`provision.target.ssh`) only know how to execute a shell string and move bytes.
Arguments are quoted here, in exactly one place. This module imports no backend.
"""

from __future__ import annotations

import hashlib
import posixpath
import secrets
import shlex
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..exceptions import CommandFailed


@dataclass(frozen=True)
class Result:
    """The outcome of one command on a target."""

    command: str
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        """True when the command exited 0."""
        return self.exit_code == 0


@dataclass(frozen=True)
class FileState:
    """What a path currently holds: content hash, mode and ownership (None when absent)."""

    sha256: str
    mode: int
    owner: str
    group: str


def command_line(cmd: str | Sequence[str], *args: Any) -> str:
    """Build one shell command line, quoting every argument exactly once.

    ``command_line("rbd info %s", spec)`` quotes ``spec`` into the template;
    ``command_line(["rbd", "info", spec])`` quotes every element.
    """
    if isinstance(cmd, str):
        if args:
            return cmd % tuple(shlex.quote(str(a)) for a in args)
        return cmd
    if args:
        raise TypeError("pass arguments either in the list or after the template, not both")
    return shlex.join(str(c) for c in cmd)


#: Where each command a target runs is logged (a verbose run: ``-v``); None logs nothing.
_trace: list[Callable[[str], None] | None] = [None]
#: The longest command line a trace shows (a long script is cut, with its length).
TRACE_CHARS = 160


def set_trace(log: Callable[[str], None] | None) -> None:
    """Log every command any target runs to ``log`` (None: stop)."""
    _trace[0] = log


def trace_line(name: str, line: str, code: int, seconds: float) -> str:
    """How a traced command is shown: where, what (cut to :data:`TRACE_CHARS`), exit status and time."""
    shown = " ".join(line.split())
    if len(shown) > TRACE_CHARS:
        shown = f"{shown[:TRACE_CHARS]}... ({len(line)} chars)"
    return f"    $ [{name}] {shown} -> {code} ({seconds:.1f}s)"


class Target(ABC):
    """A host that commands run on and files are put to.

    Subclasses implement :meth:`_exec` (run a shell string, return exit code and raw
    output) and may override :meth:`_write` / :meth:`_read` with a faster transport.
    """

    #: Human-readable name used in errors and logs (``docker://sim-1``).
    name: str = "target"

    # --- the backend primitives -------------------------------------------------
    @abstractmethod
    def _exec(self, command: str, stdin: bytes | None, timeout: float | None) -> tuple[int, bytes, bytes]:
        """Run ``command`` through ``sh -c`` and return (exit code, stdout, stderr)."""

    def _write(self, path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` (a fresh temporary file; no atomicity needed here)."""
        code, out, err = self._exec(command_line("cat > %s", path), data, None)
        if code != 0:
            raise CommandFailed(self.name, f"write {path}", code, out.decode(errors="replace"), err.decode(errors="replace"))

    def _read(self, path: str) -> bytes:
        """Return the bytes of ``path``; raise FileNotFoundError when it does not exist."""
        code, out, err = self._exec(command_line("test -f %s && cat %s", path, path), None, None)
        if code != 0:
            if not self.exists(path):
                raise FileNotFoundError(f"{self.name}:{path}")
            raise CommandFailed(self.name, f"read {path}", code, "", err.decode(errors="replace"))
        return out

    def close(self) -> None:  # noqa: B027 (optional hook: most backends hold no connection)
        """Release connections; the target reconnects lazily if used again."""

    def __enter__(self) -> "Target":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    # --- the interface ----------------------------------------------------------
    def run(
        self,
        cmd: str | Sequence[str],
        *args: Any,
        check: bool = True,
        stdin: bytes | str | None = None,
        timeout: float | None = None,
    ) -> Result:
        """Run a command and return its :class:`Result`.

        Args:
            cmd: a shell template (``"ls %s"``) or an argument list.
            *args: values quoted into the template.
            check: raise :class:`CommandFailed` on a non-zero exit.
            stdin: bytes or text fed to the command.
            timeout: seconds before the command is killed (exit 124).
        """
        line = command_line(cmd, *args)
        data = stdin.encode() if isinstance(stdin, str) else stdin
        began = time.monotonic()
        code, out, err = self._exec(line, data, timeout)
        if (trace := _trace[0]) is not None:
            trace(trace_line(self.name, line, code, time.monotonic() - began))
        result = Result(line, code, out.decode(errors="replace"), err.decode(errors="replace"))
        if check and not result.ok:
            raise CommandFailed(self.name, line, code, result.stdout, result.stderr)
        return result

    def read(self, path: str) -> bytes:
        """Return the content of ``path``; FileNotFoundError when it does not exist."""
        return self._read(path)

    def put(
        self,
        path: str,
        data: bytes | str,
        mode: int = 0o644,
        owner: str = "root",
        group: str | None = None,
    ) -> bool:
        """Make ``path`` hold ``data`` with ``mode`` and ``owner:group``; return True if anything changed.

        Unchanged content is not rewritten. New content is written to a temporary
        file in the same directory, given its mode and owner, then renamed over the
        old file, so readers never see a half-written file.
        """
        content = data.encode() if isinstance(data, str) else data
        group = group or owner
        want = hashlib.sha256(content).hexdigest()
        state = self.file_state(path)
        if state is not None and state.sha256 == want:
            if (state.mode, state.owner, state.group) == (mode, owner, group):
                return False
            self.run("chown %s %s && chmod %s %s", f"{owner}:{group}", path, f"{mode:o}", path)
            return True
        directory = posixpath.dirname(path) or "."
        tmp = posixpath.join(directory, f".{posixpath.basename(path)}.tmp-{secrets.token_hex(4)}")
        self.run("mkdir -p %s", directory)
        try:
            self.run("umask 077 && : > %s", tmp)
            self._write(tmp, content)
            self.run("chown %s %s && chmod %s %s && mv -f %s %s", f"{owner}:{group}", tmp, f"{mode:o}", tmp, tmp, path)
        except BaseException:
            self.run("rm -f %s", tmp, check=False)
            raise
        return True

    def holds(self, path: str, data: bytes | str, mode: int = 0o644, owner: str = "root", group: str | None = None) -> bool:
        """True when ``path`` already holds ``data`` with ``mode`` and ``owner:group`` (:meth:`put` would change nothing)."""
        content = data.encode() if isinstance(data, str) else data
        state = self.file_state(path)
        return state is not None and state.sha256 == hashlib.sha256(content).hexdigest() \
            and (state.mode, state.owner, state.group) == (mode, owner, group or owner)

    # --- helpers written on run(), so every backend has them -------------------
    def file_state(self, path: str) -> FileState | None:
        """Hash, mode and owner of ``path``, or None when it is not a regular file."""
        r = self.run("test -f %s && stat -c '%%a %%U %%G' %s && sha256sum %s", path, path, path, check=False)
        if not r.ok:
            return None
        lines = r.stdout.split("\n")
        mode, owner, group = lines[0].split()
        return FileState(sha256=lines[1].split()[0], mode=int(mode, 8), owner=owner, group=group)

    def exists(self, path: str) -> bool:
        """True when ``path`` exists (any kind of file)."""
        return self.run("test -e %s", path, check=False).ok

    def sha256(self, path: str) -> str | None:
        """The sha256 of a file's content, or None when it does not exist."""
        state = self.file_state(path)
        return state.sha256 if state else None

    def remove(self, path: str) -> bool:
        """Remove a file; True if it existed ("already absent" is unchanged)."""
        if not self.exists(path):
            return False
        self.run("rm -f %s", path)
        return True

    def service_active(self, unit: str) -> bool:
        """True when the systemd unit is active."""
        return self.run("systemctl is-active --quiet %s", unit, check=False).ok

    def free_bytes(self, path: str = "/") -> int:
        """Free bytes available on the filesystem holding ``path``."""
        out = self.run("df --output=avail -B1 %s | tail -n 1", path).stdout
        return int(out.strip())
