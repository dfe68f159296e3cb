"""SIGTERM and SIGHUP taken as Ctrl-C for the length of a build.

A build killed by ``kill``, by a closed terminal or by a CI runner's timeout must clean up as it
does on Ctrl-C: :class:`SignalGuard` installs handlers that raise :class:`Interrupted` (a
``KeyboardInterrupt``) in the main thread, so the build's ``except BaseException`` path removes
everything it made, and restores the previous handlers when the build ends. While the cleanup
itself runs (:meth:`SignalGuard.shield`), a further SIGTERM or SIGHUP is noted, not raised, so it
cannot cut the cleanup short; a signal that arrived then is raised once the cleanup is done.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from types import FrameType
from typing import Any, Iterator

from ..steps import Log

#: The signals handled as Ctrl-C.
TERMINATING = (signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A SIGTERM or SIGHUP received during a build, handled as Ctrl-C (the task exits non-zero)."""


class SignalGuard:
    """For the duration of a ``with`` block: SIGTERM and SIGHUP raise :class:`Interrupted`.

    Outside the main thread (where Python cannot set handlers) it does nothing.
    """

    def __init__(self, log: Log = print) -> None:
        self.log = log
        self.pending: str | None = None
        self._previous: dict[int, Any] = {}
        self._shielded = 0

    def __enter__(self) -> "SignalGuard":
        if threading.current_thread() is threading.main_thread():
            for sig in TERMINATING:
                self._previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            # None: a handler not set from Python; the default is the closest we can restore.
            signal.signal(sig, signal.SIG_DFL if previous is None else previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self._shielded:
            self.pending = self.pending or name
            self.log(f"!!! {name} received: finishing the cleanup first")
            return
        raise Interrupted(f"{name} received")

    @contextlib.contextmanager
    def shield(self) -> Iterator[None]:
        """Within: SIGTERM and SIGHUP are noted in :attr:`pending`, not raised (Ctrl-C still is)."""
        self._shielded += 1
        try:
            yield
        finally:
            self._shielded -= 1

    def raise_pending(self) -> None:
        """Raise :class:`Interrupted` for a signal that arrived while shielded (once).

        Raises:
            Interrupted: a SIGTERM or SIGHUP arrived during the cleanup.
        """
        name, self.pending = self.pending, None
        if name:
            raise Interrupted(f"{name} received during the cleanup")
