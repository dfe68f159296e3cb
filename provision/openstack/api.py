"""A small standard-library client for this instance's own OpenStack APIs, and the way to run it.

On the instance: :func:`http` (one JSON request, no proxy, bounded), Keystone tokens, and
:class:`Cloud`, an admin session whose requests ride out a restarting service. From the
provisioning host: :func:`agent` runs this package's command line on the target (the APIs
listen on the instance, which the builder may not reach directly).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Iterable

from ..exceptions import CommandFailed, ProvisionError
from ..paths import agent_argv
from ..settings import Settings
from ..systemd import bounded, wait_for
from ..target import Target
from .ini import ADMIN_PROJECT, ADMIN_USER, DOMAIN
from .secrets import Secrets

#: Every API is reached on the instance itself.
LOCAL = "127.0.0.1"
#: The package whose command line (``__main__.py``) :func:`agent` runs on the target.
AGENT_MODULE = "provision.openstack"


class OpenStackError(ProvisionError):
    """An OpenStack API or service did not do what was asked."""


def required(found: str | None, what: str) -> str:
    """``found``, the id of ``what``; OpenStackError when provisioning never made it."""
    if found is None:
        raise OpenStackError(f"{what} does not exist", hint="re-run provisioning")
    return found


def say(message: str) -> None:
    """Print one progress line at once (a boot job's journal gets it before the job ends)."""
    print(message, flush=True)


class Unreachable(OpenStackError):
    """Nothing answered at the URL (connection refused, reset, timeout).

    ``sent`` is False when the request surely never reached a server (connection refused),
    so even a non-idempotent request may be sent again.
    """

    def __init__(self, message: str, sent: bool = True) -> None:
        self.sent = sent
        super().__init__(message)


class HttpError(OpenStackError):
    """The API answered with an unexpected status."""

    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        self.status = status
        super().__init__(f"{method} {url} answered {status}: {body[:300]}")


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(
    method: str,
    url: str,
    body: Any = None,
    token: str | None = None,
    timeout: float = 15.0,
    data: Any = None,
    length: int | None = None,
    ok: Iterable[int] = (200, 201, 202, 204),
    extra_headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One HTTP request to a local API: JSON in and out, no proxy, bounded by ``timeout``.

    Raises:
        Unreachable: no answer. HttpError: a status outside ``ok``.
    """
    headers = {"Accept": "application/json", **(extra_headers or {})}
    if token:
        headers["X-Auth-Token"] = token
    payload = data
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    elif data is not None:
        headers["Content-Type"] = "application/octet-stream"
        if length is not None:
            headers["Content-Length"] = str(length)
    req = urllib.request.Request(url, data=payload, method=method, headers=headers)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            status, raw, hdrs = resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as e:
        status, raw, hdrs = e.code, e.read(), dict(e.headers or {})
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise Unreachable(f"{method} {url}: no answer ({reason})", sent=not isinstance(reason, ConnectionRefusedError)) from e
    text = raw.decode(errors="replace")
    if status not in set(ok):
        raise HttpError(method, url, status, text)
    try:
        parsed = json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        parsed = text
    return status, hdrs, parsed


def answers(url: str, timeout: float = 5.0) -> bool:
    """True when anything answers HTTP at ``url`` (a version document, 401, 300 ...)."""
    try:
        http("GET", url, timeout=timeout, ok=range(100, 600))
        return True
    except Unreachable:
        return False


def wait_answering(what: str, url: str, timeout: float) -> float:
    """Wait until ``url`` answers; the seconds waited."""
    return wait_for(f"{what} to answer at {url}", lambda: answers(url), timeout, interval=0.5)


def get_token(settings: Settings, user: str, password: str, project: str | None, host: str = LOCAL) -> tuple[str, dict[str, Any]]:
    """A Keystone token for ``user`` (project-scoped when ``project``); (token id, token body)."""
    auth: dict[str, Any] = {
        "identity": {"methods": ["password"], "password": {"user": {"name": user, "domain": {"name": DOMAIN}, "password": password}}}
    }
    if project:
        auth["scope"] = {"project": {"name": project, "domain": {"name": DOMAIN}}}
    url = f"http://{host}:{settings.openstack.keystone_port}/v3/auth/tokens"
    _, headers, body = http("POST", url, {"auth": auth}, timeout=settings.openstack.api_timeout_s, ok=(201,))
    token = headers.get("X-Subject-Token") or headers.get("x-subject-token") or ""
    return token, (body or {}).get("token", {})


def can_authenticate(settings: Settings, user: str, password: str) -> bool:
    """True when Keystone accepts ``user``'s ``password`` (False on 401)."""
    try:
        get_token(settings, user, password, None)
        return True
    except HttpError as e:
        if e.status == 401:
            return False
        raise


#: How long a request keeps being retried while a service restarts (connection refused or reset, 502-504).
RETRY_S = 90.0


class Cloud:
    """An admin session on this instance's own APIs (all through 127.0.0.1).

    Requests ride out a service that is restarting (a rotation queues restarts): they are
    retried for :data:`RETRY_S` while nothing answers or a proxy-ish 502-504 comes back, and
    a 401 (a token made with Fernet keys that were just replaced) gets a new token once.
    A POST is sent again only when it surely never arrived (connection refused).
    """

    def __init__(self, settings: Settings, admin_password: str, retry_s: float = RETRY_S) -> None:
        self.settings = settings
        o = settings.openstack
        self.timeout = o.api_timeout_s
        self.retry_s = retry_s
        self._password = admin_password
        self.keystone = f"http://{LOCAL}:{o.keystone_port}/v3"
        self.glance = f"http://{LOCAL}:{o.glance_port}/v2"
        self._login()

    def _login(self) -> None:
        self.token, body = get_token(self.settings, ADMIN_USER, self._password, ADMIN_PROJECT)
        self.project_id = body.get("project", {}).get("id", "")
        o = self.settings.openstack
        self.cinder = f"http://{LOCAL}:{o.cinder_port}/v3/{self.project_id}"
        self.nova = f"http://{LOCAL}:{o.nova_port}/v2.1"
        self.neutron = f"http://{LOCAL}:{o.neutron_port}/v2.0"

    def _send(self, method: str, url: str, body: Any, ok: Iterable[int], kw: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        deadline = time.monotonic() + self.retry_s
        relogged = False
        while True:
            try:
                return http(method, url, body, token=self.token, timeout=kw.get("timeout", self.timeout), ok=ok,
                            data=kw.get("data"), length=kw.get("length"), extra_headers=kw.get("headers"))
            except Unreachable as e:
                if (method == "POST" and e.sent) or kw.get("data") is not None or time.monotonic() > deadline:
                    raise
            except HttpError as e:
                if e.status == 401 and not relogged:
                    relogged = True
                    self._login()
                    continue
                # a gateway's error, or a read that failed inside a service still starting up
                # (Nova answers 500 when Neutron did): sent again while the retry time lasts
                transient = e.status in (502, 503, 504) or (e.status == 500 and method == "GET")
                if not transient or method == "POST" or time.monotonic() > deadline:
                    raise
            time.sleep(1.0)

    def call(self, method: str, url: str, body: Any = None, ok: Iterable[int] = (200, 201, 202, 204), **kw: Any) -> Any:
        """An authenticated request; the parsed JSON body."""
        return self._send(method, url, body, ok, kw)[2]

    def status(self, method: str, url: str) -> int:
        """Only the status of a request (any status is fine)."""
        return self._send(method, url, None, range(100, 600), {})[0]

    # --- Keystone ----------------------------------------------------------------------------
    def find(self, kind: str, **filters: str) -> list[dict[str, Any]]:
        """``GET /v3/KIND?filters`` entries."""
        q = urllib.parse.urlencode(filters)
        return list(self.call("GET", f"{self.keystone}/{kind}{'?' + q if q else ''}").get(kind, []))

    def domain_id(self) -> str:
        """The id of the ``Default`` domain."""
        found = self.find("domains", name=DOMAIN)
        if not found:
            raise OpenStackError(f"Keystone has no domain {DOMAIN!r}")
        return str(found[0]["id"])


def session(settings: Settings, sec: Secrets, wait: float = 0.0, retry_s: float = RETRY_S) -> Cloud:
    """An admin session; with ``wait``, retried that long while Keystone is (re)starting.

    ``retry_s``: how long its requests ride out a restarting service (0 for quick probes).
    """
    make = lambda: Cloud(settings, sec.admin_password, retry_s)  # noqa: E731
    return retry(make, wait) if wait else make()


def retry(fn: Callable[[], Any], timeout: float) -> Any:
    """Call ``fn`` until it stops raising Unreachable/5xx (a service still starting), within ``timeout``."""
    deadline = time.monotonic() + max(timeout, 5.0)
    while True:
        try:
            return fn()
        except (Unreachable, HttpError) as e:
            if isinstance(e, HttpError) and e.status < 500:
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def agent(target: Target, *args: str, timeout: int = 900) -> dict[str, Any]:
    """Run ``python3 -m provision.openstack ARGS`` on the target, bounded; return the JSON it prints last."""
    r = target.run(bounded(agent_argv(AGENT_MODULE, *args), timeout), check=False)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise CommandFailed(target.name, r.command, r.exit_code, r.stdout, r.stderr)
    data = json.loads(lines[-1])
    if not r.ok and not data.get("error"):
        raise CommandFailed(target.name, r.command, r.exit_code, r.stdout, r.stderr)
    if data.get("error"):
        raise ProvisionError(f"{' '.join(args[:1])} on {target.name}: {data['error']}")
    return data
