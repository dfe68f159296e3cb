"""The simulation's instance metadata service: each launched instance's own data, with IMDSv2 semantics.

moto answers ``/latest/meta-data/*`` with fixed values unrelated to the instances it
launched, accepts any token and has no public keys. This server answers per instance
instead: a resolver maps the request's *source address* to an :class:`InstanceView`
built from moto's ``describe_instances`` (see :func:`sim.imds_tree.instance_view`), and the token
rules are EC2's:

* ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds`` in 1..21600
  returns a token bound to the asking instance (400 for a missing or bad TTL, 403 when
  the request carries ``X-Forwarded-For``, 405 for other methods).
* ``X-aws-ec2-metadata-token`` on a GET must be a live token of that instance (else 401);
  without a token a GET is answered only when ``HttpTokens`` is ``optional`` (IMDSv1).
* Unknown paths are 404; directories list their entries (``name/`` for subdirectories),
  with or without the trailing slash; ``public-keys/`` lists ``0=KEYNAME``.
* The PUT's answer leaves with the IP TTL set to ``HttpPutResponseHopLimit``, as on EC2,
  so a token cannot be fetched from further away than the hop limit allows.

Standard library only. The tree is pure data (:mod:`sim.imds_tree`), and
:meth:`IMDSServer.respond` decides an answer without any socket, so both are tested as data.
"""

from __future__ import annotations

import collections
import logging
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from provision.exceptions import SimError

from .imds_tree import InstanceView, lookup

log = logging.getLogger(__name__)

TOKEN_PATH = "/latest/api/token"
#: The API versions EC2's metadata service lists at ``/`` and serves, oldest first, ``latest`` last:
#: clients ask for a dated one (cloud-init asks ``2009-04-04`` and ``2021-03-23``), the AWS tools for
#: ``latest``. Each serves this instance's one tree here (EC2's oldest versions hold fewer keys).
API_VERSIONS = (
    "1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10", "2007-12-15", "2008-02-01", "2008-09-01",
    "2009-04-04", "2011-01-01", "2011-05-01", "2012-01-12", "2014-02-25", "2014-11-05", "2015-10-20",
    "2016-04-19", "2016-06-30", "2016-09-02", "2018-03-28", "2018-08-17", "2018-09-24", "2019-10-01",
    "2020-10-27", "2021-01-03", "2021-03-23", "2021-07-15", "2022-09-24", "2024-04-11", "latest",
)
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
MAX_TOKEN_TTL = 21600

Resolver = Callable[[str], "InstanceView | None"]


@dataclass(frozen=True)
class Answer:
    """The server's decision for one request: status, body, extra headers, and the IP TTL to send with."""

    status: int
    body: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    ip_ttl: int | None = None


@dataclass(frozen=True)
class RequestRecord:
    """One answered request, kept for tests and debugging."""

    client: str
    method: str
    path: str
    status: int


_REASON_BODY = {
    400: "400 - Bad Request",
    401: "401 - Unauthorized",
    403: "403 - Forbidden",
    404: "404 - Not Found",
    405: "405 - Method Not Allowed",
}


def _plain(status: int, detail: str = "", **headers: str) -> Answer:
    body = _REASON_BODY.get(status, str(status))
    return Answer(status, body + (f"\n{detail}" if detail else "") + "\n", headers)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    imds: "IMDSServer"


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    server_version = "EC2ws"
    sys_version = ""

    def _serve(self) -> None:
        imds = self.server.imds
        client = self.client_address[0]
        headers = {k: v for k, v in self.headers.items()}
        answer = imds.respond(client, self.command, self.path, headers)
        if answer.ip_ttl is not None and imds.enforce_hop_limit:
            _set_ttl(self.connection, answer.ip_ttl)
        data = answer.body.encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (BaseHTTPRequestHandler's name)
        log.debug("imds %s " + format, self.client_address[0], *args)


def _set_ttl(sock: socket.socket, ttl: int) -> None:
    try:
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
        else:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    except OSError as e:  # not fatal: the answer still goes out, only without the hop limit
        log.warning("cannot set the hop limit %d on a metadata answer: %s", ttl, e)


class IMDSServer:
    """An HTTP metadata service answering each instance by the request's source address.

    Args:
        host: address to bind (``169.254.169.254`` inside the sim's metadata network,
            ``127.0.0.1`` in tests).
        port: port to bind; 0 picks a free one (see :attr:`address`).
        resolve: maps a client IP to its :class:`InstanceView`, or None when no instance
            has that address (e.g. ``views.get`` for a dict of views).
        enforce_hop_limit: send the token PUT's answer with the IP TTL set to the hop limit.
        clock: monotonic clock for token expiry (injectable for tests).

    Usage::

        with IMDSServer("127.0.0.1", 0, views.get) as server:
            url = server.url
    """

    def __init__(
        self,
        host: str,
        port: int,
        resolve: Resolver,
        *,
        enforce_hop_limit: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.resolve = resolve
        self.host = host
        self.port = port
        self.enforce_hop_limit = enforce_hop_limit
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}
        self._log: collections.deque[RequestRecord] = collections.deque(maxlen=2000)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------
    def start(self) -> "IMDSServer":
        """Bind and serve in a background thread; return self.

        Raises:
            SimError: the address cannot be bound.
        """
        if self._httpd is not None:
            return self
        try:
            httpd = _HTTPServer((self.host, self.port), _Handler)
        except OSError as e:
            raise SimError(
                f"Cannot bind the metadata server to {self.host}:{self.port}: {e}",
                hint="is another metadata server running, or is the address not on any interface?",
            ) from e
        httpd.imds = self
        self._httpd = httpd
        # A short poll interval makes stop() quick; the loop itself costs nothing noticeable.
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"imds-{self.host}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the socket (idempotent)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "IMDSServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the real port once started with port 0."""
        if self._httpd is None:
            return self.host, self.port
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """Base URL of the server (``http://HOST:PORT``)."""
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def requests(self) -> list[RequestRecord]:
        """The most recent answered requests, oldest first."""
        with self._lock:
            return list(self._log)

    def count(self, method: str | None = None, path: str | None = None, status: int | None = None) -> int:
        """How many recorded requests match all given criteria."""
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method)
            and (path is None or r.path == path)
            and (status is None or r.status == status)
        )

    def revoke_tokens(self) -> None:
        """Forget every issued token (as after a stop/start of the instance)."""
        with self._lock:
            self._tokens.clear()

    # --- the decision, without sockets ------------------------------------------
    def respond(self, client: str, method: str, raw_path: str, headers: Mapping[str, str]) -> Answer:
        """Decide the answer to one request from ``client`` (its source IP).

        Args:
            client: the request's source address.
            method: HTTP method.
            raw_path: request target as sent (query strings and repeated slashes are tolerated).
            headers: request headers (case-insensitive lookup is done here).
        """
        path = re.sub(r"/{2,}", "/", urlsplit(raw_path).path) or "/"
        try:
            answer = self._decide(client, method, path, {k.lower(): v for k, v in headers.items()})
        except Exception as e:  # a resolver bug must not kill the server thread silently
            log.exception("metadata request %s %s from %s failed", method, path, client)
            answer = Answer(500, f"500 - Internal Server Error\n{type(e).__name__}: {e}\n")
        with self._lock:
            self._log.append(RequestRecord(client, method, path, answer.status))
        return answer

    def _decide(self, client: str, method: str, path: str, headers: Mapping[str, str]) -> Answer:
        view = self.resolve(client)
        if view is None:
            return _plain(
                403,
                f"No simulated instance has the address {client}; this metadata server answers launched instances only.",
            )
        if not view.enabled:
            return _plain(403, "The instance metadata endpoint is disabled for this instance (HttpEndpoint=disabled).")
        if path == TOKEN_PATH:
            return self._token_request(view, method, headers)
        if method not in ("GET", "HEAD"):
            return _plain(405, Allow="GET, HEAD")
        extra: dict[str, str] = {}
        token = headers.get(TOKEN_HEADER.lower())
        if token is not None:
            remaining = self._check_token(token, view.instance_id)
            if remaining is None:
                return _plain(401)
            extra[TTL_HEADER] = str(remaining)
        elif view.http_tokens == "required":
            return _plain(401)
        if path == "/":
            return Answer(200, "\n".join(API_VERSIONS), extra)
        version, _, rest = path.lstrip("/").partition("/")
        if version not in API_VERSIONS:
            return _plain(404)
        body = lookup(view.tree, rest + ("/" if path.endswith("/") and rest else ""))
        if body is None:
            return _plain(404)
        return Answer(200, body, extra)

    def _token_request(self, view: InstanceView, method: str, headers: Mapping[str, str]) -> Answer:
        if method != "PUT":
            return _plain(405, Allow="PUT")
        if "x-forwarded-for" in headers:
            return _plain(403)
        raw = headers.get(TTL_HEADER.lower())
        try:
            ttl = int(raw) if raw is not None else 0
        except ValueError:
            ttl = 0
        if not 1 <= ttl <= MAX_TOKEN_TTL:
            return _plain(400, f"{TTL_HEADER} must be an integer from 1 to {MAX_TOKEN_TTL}.")
        token = secrets.token_urlsafe(42)
        now = self._clock()
        with self._lock:
            self._tokens = {t: v for t, v in self._tokens.items() if v[1] > now}
            self._tokens[token] = (view.instance_id, now + ttl)
        return Answer(200, token, {TTL_HEADER: str(ttl)}, ip_ttl=view.hop_limit)

    def _check_token(self, token: str, instance_id: str) -> int | None:
        """Seconds the token has left, or None when it is unknown, expired or another instance's."""
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None or entry[0] != instance_id:
            return None
        left = entry[1] - self._clock()
        return max(1, int(left)) if left > 0 else None
