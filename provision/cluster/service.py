"""The controller's join service: one HTTPS endpoint that trades a valid join token for the cluster's hand-over.

``POST /v1/join`` with ``{"id", "secret", "joiner"}`` (the joiner's private address):

* a valid token is spent first (its record saved as used), then ``handover(record, joiner)``
  is called and its JSON returned (200);
* any other token gets 403 and ``{"error": "<one sentence>"}``: nothing is handed over and
  nothing of the cluster changes; the sentence says why (unknown, wrong, used, expired, revoked).

The service serves the instance's own TLS certificate, whose fingerprint the token pins.
It keeps no secret in memory beyond one request, and the token store is read and written
under one lock per request, so two joiners racing with one token cannot both win.
Standard library only: it runs on the instance beside the boot agent.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

from ..exceptions import JoinError
from . import token as tk

#: ``handover(record, joiner) -> JSON-able dict``: what a joiner receives for a valid token.
Handover = Callable[[tk.Record, str], dict[str, Any]]
Log = Callable[[str], None]
MAX_BODY = 4096
PATH = "/v1/join"


class FileStore:
    """The token records in one JSON file, written atomically with mode 0600.

    :meth:`locked` serialises every read-change-write across processes (the join service
    and a ``token`` command issuing beside it) with ``flock`` on a lock file next to it.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's lock (exclusive, blocking) for the ``with`` block."""
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def load(self) -> dict[str, tk.Record]:
        """The records (none when the file is absent)."""
        try:
            with open(self.path) as f:
                return tk.load_records(f.read())
        except FileNotFoundError:
            return {}

    def save(self, records: dict[str, tk.Record]) -> None:
        """Replace the file with ``records`` (a temporary file renamed over it: never half written)."""
        tmp = f"{self.path}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(tk.dump_records(records))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def redeem_locked(store: FileStore, lock: threading.Lock, request: dict[str, Any], now: int) -> tuple[tk.Record, str]:
    """Spend the token in ``request`` under ``lock``; return its used record and the joiner.

    Raises:
        JoinError: the request is malformed or the token must not join (see :func:`token.redeem`).
    """
    tid, secret, joiner = request.get("id"), request.get("secret"), request.get("joiner")
    if not all(isinstance(v, str) and v for v in (tid, secret, joiner)):
        raise JoinError("A join request needs id, secret and joiner")
    assert isinstance(tid, str) and isinstance(secret, str) and isinstance(joiner, str)
    with lock, store.locked():
        records = tk.prune(store.load(), now=now)
        used = tk.redeem(records, tid, secret, now=now, joiner=joiner)
        records[tid] = used
        store.save(records)
    return used, joiner


def make_server(
    host: str, port: int, cert: str, key: str, store: FileStore, handover: Handover, log: Log,
    clock: Callable[[], float] = time.time,
) -> ThreadingHTTPServer:
    """An HTTPS server on ``host:port`` for the join endpoint (call ``serve_forever``; ``port`` 0 picks one)."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        server_version = "coa-join"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass  # every outcome is logged once below, without the request's body

        def _answer(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            peer = self.client_address[0]
            if self.path != PATH:
                self._answer(404, {"error": f"no such endpoint; POST {PATH}"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_BODY:
                self._answer(400, {"error": "a join request is a small JSON body"})
                return
            try:
                request = json.loads(self.rfile.read(length))
                if not isinstance(request, dict):
                    raise JoinError("A join request is a JSON object")
                record, joiner = redeem_locked(store, lock, request, int(clock()))
            except (ValueError, JoinError) as e:
                reason = e.message if isinstance(e, JoinError) else "the request is not JSON"
                log(f"join refused from {peer}: {reason}")
                self._answer(403, {"error": reason})
                return
            log(f"join token {record.id} spent by {joiner} (from {peer})")
            try:
                body = handover(record, joiner)
            except Exception as e:  # the token is spent: say so, never leave the joiner waiting
                log(f"join token {record.id}: the hand-over failed: {type(e).__name__}: {e}")
                self._answer(500, {"error": f"the controller could not hand over ({type(e).__name__}); "
                                            "issue a new token with `invoke cluster.token`"})
                return
            self._answer(200, body)

    server = ThreadingHTTPServer((host, port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    return server
