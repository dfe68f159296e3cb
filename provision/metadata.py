"""Instance metadata client: IMDSv2 first, IMDSv1 fallback, short timeouts, bounded retries.

This module runs on the instance at boot under the distribution's ``/usr/bin/python3``
with no third-party packages, so it uses the standard library only. It talks
``http.client`` directly (not ``urllib``): a proxy configured in the environment must
never see metadata requests.

Usage::

    client = MetadataClient()
    client.get("local-ipv4")                    # "10.0.3.17"
    client.get("public-hostname", default=None)  # None in a VPC without public DNS
    info = client.snapshot()                     # InstanceInfo(instance_id=..., ...)

From a shell: ``python3 -m provision.metadata local-ipv4`` prints one value, and
``python3 -m provision.metadata`` prints the snapshot as JSON.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar, overload
from urllib.parse import urlsplit

from .exceptions import ConfigError, MetadataError
from .instance import InstanceInfo, region_from_az

if TYPE_CHECKING:
    from .settings import Settings

#: Path of the IMDSv2 session-token endpoint.
TOKEN_PATH = "/latest/api/token"
#: Request header that asks for a token with this lifetime (seconds, 1..21600).
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
#: Request header that carries the token.
TOKEN_HEADER = "X-aws-ec2-metadata-token"
#: Longest token lifetime EC2 grants.
MAX_TOKEN_TTL = 21600
#: Upper bound of one backoff sleep, whatever ``backoff`` and the attempt number.
MAX_BACKOFF_S = 10.0

_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# A token PUT answered with one of these means "this endpoint has no IMDSv2".
_NO_V2_STATUS = frozenset({403, 404, 405})

class _Missing:
    """Sentinel type: no default was given, so a missing path is an error."""

    def __repr__(self) -> str:
        return "<required>"


_REQUIRED = _Missing()
D = TypeVar("D")


@dataclass(frozen=True)
class _Reply:
    status: int
    reason: str
    body: str
    headers: dict[str, str]


class _Trace:
    """What one public call tried, in order, so a failure can say it in one message."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.steps: list[str] = []

    def add(self, step: str) -> None:
        self.steps.append(step)

    def error(self, problem: str, hint: str | None = None) -> MetadataError:
        tried = "; ".join(self.steps) if self.steps else "nothing"
        return MetadataError(f"Failed to read instance metadata {self.url}: {problem} (tried: {tried})", hint=hint)


class _Unreachable(Exception):
    """Every attempt of one request failed without an HTTP answer worth returning."""


class _TokenLost(Exception):
    """A token request was sent but its answer never came (the hop limit drops it)."""


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _describe(e: BaseException) -> str:
    text = str(e) or repr(e)
    return f"{type(e).__name__}: {text}"


def _snippet(body: str) -> str:
    """The body of an error answer on one line, shortened (servers often explain a refusal there)."""
    text = " / ".join(line.strip() for line in body.strip().splitlines() if line.strip())
    return f" {text[:200]!r}" if text else ""


class MetadataClient:
    """Read the EC2 instance metadata service (IMDS) with IMDSv2 tokens.

    A session token is requested with ``PUT /latest/api/token`` and reused until shortly
    before it expires; a 401 with a cached token fetches a new one once. When the token
    request is refused as unsupported (403/404/405) or its answer never arrives (the
    hop limit drops it, as in a container behind a bridge), the client falls back to
    IMDSv1 (plain GET) if ``allow_v1``, and fails otherwise. Connection errors,
    timeouts, 429 and 5xx are retried with exponential backoff; a 404 is an answer and
    is never retried. The client is safe to share between threads.

    Args:
        base_url: the service, ``http://169.254.169.254`` on EC2 (``http://[fd00:ec2::254]`` for IPv6).
        allow_v1: fall back to token-less IMDSv1 when IMDSv2 is not available.
        timeout: seconds for connecting and for each read.
        retries: how many times a failed request is retried (at most ``retries + 1`` attempts).
        backoff: first retry delay in seconds; doubled on each further retry (capped at 10 s).
        token_ttl: requested token lifetime in seconds (1..21600).
        v1_only: never ask for a token (IMDSv1 only): to see how a service treats token-less
            requests; needs ``allow_v1``.
        source_address: local address to send from (tests, multi-homed hosts); None lets the kernel pick.
        clock: monotonic clock (injectable for tests).
        sleep: sleep function (injectable for tests).

    Raises:
        ConfigError: the base URL or a number is invalid.
    """

    def __init__(
        self,
        base_url: str = "http://169.254.169.254",
        allow_v1: bool = True,
        timeout: float = 2.0,
        retries: int = 3,
        backoff: float = 0.5,
        token_ttl: int = MAX_TOKEN_TTL,
        *,
        v1_only: bool = False,
        source_address: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme != "http" or not parts.hostname:
            raise ConfigError(
                f"Metadata URL {base_url!r} is not an http:// URL with a host",
                hint="use http://169.254.169.254 (EC2) or http://HOST:PORT of a test server",
            )
        if not 1 <= token_ttl <= MAX_TOKEN_TTL:
            raise ConfigError(f"Metadata token TTL must be 1..{MAX_TOKEN_TTL} seconds, got {token_ttl}")
        if retries < 0 or timeout <= 0 or backoff < 0:
            raise ConfigError(
                f"Metadata client needs timeout > 0, retries >= 0, backoff >= 0; "
                f"got timeout={timeout}, retries={retries}, backoff={backoff}"
            )
        if v1_only and not allow_v1:
            raise ConfigError("Metadata client cannot be both IMDSv1-only and refuse IMDSv1 (v1_only with allow_v1=False)")
        try:
            port = parts.port or 80
        except ValueError as e:
            raise ConfigError(f"Metadata URL {base_url!r} has an invalid port") from e
        self.base_url = f"http://{parts.netloc}{parts.path}"
        self.allow_v1 = allow_v1
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.token_ttl = token_ttl
        self._host = parts.hostname
        self._port = port
        self._prefix = parts.path
        self._source = (source_address, 0) if source_address else None
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._token: str | None = None
        self._token_renew_at = 0.0
        self._v1_only = v1_only

    @classmethod
    def from_settings(cls, settings: "Settings", **options: Any) -> "MetadataClient":
        """Build a client from :class:`provision.settings.Settings` (``metadata_url``, ``metadata_allow_v1``)."""
        return cls(base_url=settings.metadata_url, allow_v1=settings.metadata_allow_v1, **options)

    def __repr__(self) -> str:
        return f"<MetadataClient {self.base_url} mode={self.mode or 'unknown'}>"

    @property
    def mode(self) -> str | None:
        """``"v2"`` once a token was obtained, ``"v1"`` after falling back, None before the first request."""
        if self._v1_only:
            return "v1"
        return "v2" if self._token else None

    # --- public reads ------------------------------------------------------------
    @overload
    def get(self, path: str) -> str: ...

    @overload
    def get(self, path: str, default: D) -> str | D: ...

    def get(self, path: str, default: Any = _REQUIRED) -> Any:
        """Return the value at ``/latest/meta-data/PATH`` (e.g. ``local-ipv4``, ``placement/``).

        Args:
            path: path below ``/latest/meta-data/``; a trailing slash reads a listing.
            default: returned when the path does not exist (404); without it, a 404 raises.

        Raises:
            MetadataError: the service cannot be reached, refuses the request, or (without
                ``default``) the path does not exist.
        """
        return self.get_raw("meta-data/" + path.lstrip("/"), default)

    @overload
    def get_dynamic(self, path: str) -> str: ...

    @overload
    def get_dynamic(self, path: str, default: D) -> str | D: ...

    def get_dynamic(self, path: str, default: Any = _REQUIRED) -> Any:
        """Return the value at ``/latest/dynamic/PATH`` (e.g. ``instance-identity/document``).

        Raises:
            MetadataError: as :meth:`get`.
        """
        return self.get_raw("dynamic/" + path.lstrip("/"), default)

    def user_data(self) -> str | None:
        """Return the instance's user data, or None when it was launched without any.

        Raises:
            MetadataError: as :meth:`get`.
        """
        return self.get_raw("user-data", None)

    def instance_identity(self) -> dict[str, Any] | None:
        """Return the instance identity document as a dict, or None when the service has none.

        Raises:
            MetadataError: the service fails, or the document is not a JSON object.
        """
        text = self.get_dynamic("instance-identity/document", default=None)
        if text is None:
            return None
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise MetadataError(f"The instance identity document is not JSON: {text[:80]!r}") from e
        if not isinstance(doc, dict):
            raise MetadataError(f"The instance identity document is not a JSON object: {text[:80]!r}")
        return doc

    def snapshot(self) -> InstanceInfo:
        """Read everything this project needs about the instance into one :class:`InstanceInfo`.

        Raises:
            MetadataError: a required value is missing or the service fails.
        """
        az = self._required("placement/availability-zone")
        region = region_from_az(az) or self._required("placement/region")
        return InstanceInfo(
            instance_id=self._required("instance-id"),
            ami_id=self._required("ami-id"),
            instance_type=self._required("instance-type"),
            local_ipv4=self._required("local-ipv4"),
            local_hostname=self._required("local-hostname"),
            availability_zone=az,
            region=region,
            public_ipv4=self._optional("public-ipv4"),
            public_hostname=self._optional("public-hostname"),
            openssh_key=self._optional("public-keys/0/openssh-key"),
            mac=self._optional("mac"),
        )

    @overload
    def get_raw(self, path: str) -> str: ...

    @overload
    def get_raw(self, path: str, default: D) -> str | D: ...

    def get_raw(self, path: str, default: Any = _REQUIRED) -> Any:
        """Return the value at ``/latest/PATH`` (``meta-data/...``, ``dynamic/...``, ``user-data``).

        Raises:
            MetadataError: as :meth:`get`.
        """
        rel = self._prefix + "/latest/" + path.lstrip("/")
        trace = _Trace(self._url(rel))
        try:
            for _ in range(2):  # the second round only after a 401 on a cached token
                token, fresh = self._current_token(trace)
                headers = {TOKEN_HEADER: token} if token else {}
                reply = self._send("GET", rel, headers, trace, "IMDSv2" if token else "IMDSv1")
                if reply.status == 200:
                    return reply.body
                if reply.status == 404:
                    if not isinstance(default, _Missing):
                        return default
                    raise trace.error("no such path (404)", hint="list the parent directory (a path ending in /) to see what exists")
                if reply.status == 401 and token and not fresh:
                    self._drop_token(token)
                    continue
                break
        except _Unreachable:
            raise trace.error(
                "the metadata service did not answer",
                hint=f"is this an EC2 instance with HttpEndpoint=enabled, and is {self.base_url} reachable?",
            ) from None
        if reply.status == 401 and not token:
            raise trace.error(
                "the service requires IMDSv2 tokens (HttpTokens=required) and IMDSv2 is not available",
                hint="check the instance's metadata options and the PUT hop limit (HttpPutResponseHopLimit)",
            )
        raise trace.error(f"HTTP {reply.status} {reply.reason}")

    # --- internals ---------------------------------------------------------------
    def _required(self, path: str) -> str:
        return self.get(path).strip()

    def _optional(self, path: str) -> str | None:
        value = self.get(path, default=None)
        if value is None:
            return None
        return value.strip() or None

    def _url(self, rel: str) -> str:
        return f"http://{urlsplit(self.base_url).netloc}{rel}"

    def _drop_token(self, token: str) -> None:
        with self._lock:
            if self._token == token:
                self._token = None

    def _current_token(self, trace: _Trace) -> tuple[str | None, bool]:
        """Return (token or None for IMDSv1, whether it was just fetched)."""
        with self._lock:
            if self._v1_only:
                return None, False
            now = self._clock()
            if self._token and now < self._token_renew_at:
                return self._token, False
            self._token = None
            try:
                reply: _Reply | None = self._send(
                    "PUT",
                    self._prefix + TOKEN_PATH,
                    {TTL_HEADER: str(self.token_ttl)},
                    trace,
                    "IMDSv2 token",
                    timeout_means_no_v2=self.allow_v1,
                )
            except _TokenLost:
                reply = None
            if reply is not None and reply.status == 200 and reply.body.strip():
                try:
                    ttl = int(reply.headers.get(TTL_HEADER.lower(), self.token_ttl))
                except ValueError:
                    ttl = self.token_ttl
                ttl = min(ttl, self.token_ttl)
                # Renew a little before the service would: 10 % of the lifetime, at most a minute.
                self._token = reply.body.strip()
                self._token_renew_at = now + ttl - min(60.0, ttl * 0.1)
                return self._token, True
            if reply is None or reply.status in _NO_V2_STATUS:
                if self.allow_v1:
                    self._v1_only = True
                    return None, False
                raise trace.error(
                    "IMDSv2 is not available and IMDSv1 is not allowed",
                    hint="allow IMDSv1 (metadata_allow_v1) or check the metadata service",
                )
            raise trace.error(f"the token request was refused (HTTP {reply.status} {reply.reason})")

    def _connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout, source_address=self._source)

    def _send(
        self,
        method: str,
        rel: str,
        headers: dict[str, str],
        trace: _Trace,
        what: str,
        timeout_means_no_v2: bool = False,
    ) -> _Reply:
        """One request with retries; return the final answer.

        Raises:
            _Unreachable: no usable answer after every attempt (the trace says why).
            _TokenLost: the request timed out waiting for its answer and ``timeout_means_no_v2``.
        """
        url = self._url(rel)
        attempts = self.retries + 1
        last = ""
        for n in range(1, attempts + 1):
            if n > 1:
                self._sleep(min(self.backoff * 2 ** (n - 2), MAX_BACKOFF_S))
            conn = self._connection()
            try:
                try:
                    conn.connect()
                except OSError as e:
                    last = _describe(e)
                    continue
                try:
                    conn.request(method, rel, headers=headers)
                    resp = conn.getresponse()
                    body = resp.read().decode("utf-8", errors="replace")
                except TimeoutError as e:
                    if timeout_means_no_v2:
                        trace.add(f"{what} {method} {url}: no answer within {self.timeout:g}s, falling back to IMDSv1")
                        raise _TokenLost(url) from e
                    last = _describe(e)
                    continue
                except (OSError, http.client.HTTPException) as e:
                    last = _describe(e)
                    continue
            finally:
                conn.close()
            if resp.status in _RETRYABLE_STATUS:
                last = f"HTTP {resp.status} {resp.reason}{_snippet(body)}"
                continue
            detail = "" if resp.status == 200 else _snippet(body)
            trace.add(f"{what} {method} {url}: HTTP {resp.status}{detail} after {_plural(n, 'attempt')}")
            return _Reply(resp.status, resp.reason, body, {k.lower(): v for k, v in resp.getheaders()})
        trace.add(f"{what} {method} {url}: no answer after {_plural(attempts, 'attempt')} (last error: {last})")
        raise _Unreachable(url)


def main(argv: Sequence[str] | None = None) -> int:
    """Print one metadata value, or the instance snapshot as JSON (``python3 -m provision.metadata``)."""
    parser = argparse.ArgumentParser(
        prog="python3 -m provision.metadata",
        description="Read the EC2 instance metadata service (IMDSv2, IMDSv1 fallback).",
    )
    parser.add_argument(
        "path",
        nargs="?",
        help="path below /latest/meta-data/ (e.g. local-ipv4, placement/); 'dynamic/...' and "
        "'user-data' are read below /latest/. Without it, print the instance snapshot as JSON.",
    )
    parser.add_argument("--url", default="http://169.254.169.254", help="metadata service base URL")
    parser.add_argument("--v2-only", action="store_true", help="refuse the IMDSv1 fallback")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per connect/read")
    parser.add_argument("--retries", type=int, default=3, help="retries per request")
    args = parser.parse_args(argv)
    try:
        client = MetadataClient(args.url, allow_v1=not args.v2_only, timeout=args.timeout, retries=args.retries)
        if args.path is None:
            print(json.dumps(client.snapshot().as_dict(), indent=2, sort_keys=True))
            return 0
        path = args.path.lstrip("/")
        if path.startswith("latest/"):
            path = path[len("latest/") :]
        if path.startswith(("dynamic/", "user-data", "meta-data/")):
            value = client.get_raw(path)
        else:
            value = client.get(path)
        sys.stdout.write(value or "")
        if value and not value.endswith("\n"):
            sys.stdout.write("\n")
        return 0
    except (MetadataError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
