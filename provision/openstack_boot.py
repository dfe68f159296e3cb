"""OpenStack boot jobs and a small standard-library client for the local APIs.

Runs on the instance under the distribution's ``/usr/bin/python3`` (stdlib only), as
systemd units of the boot agent (see :func:`provision.boot.jobs`):

* :func:`rotate_secrets` — once per instance-id, before Keystone, Glance and Cinder
  start (after ``coa-ceph-keys``): new database, broker, admin, service and Fernet
  secrets, a new libvirt secret holding the rotated ``client.volumes`` key; prints the
  admin password once to the console.
* :func:`reconcile` — every boot, after Keystone and before Glance and Cinder: the
  configuration files and the Keystone catalog follow the instance's private address and
  public name; service users' passwords match the configuration. Touches nothing and logs
  ``unchanged`` when nothing differs.
* :func:`ensure_boot_volume` — once per instance-id, after Cinder: the bootable volume
  ``cephdemo-boot``, made from the golden guest image exactly once, ever.

Provisioning runs the same code on the host through ``python3 -m provision.openstack_boot
COMMAND`` (the API listens on the instance, which the builder may not reach directly);
each command prints one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Iterable

from . import openstack as osp
from .exceptions import ProvisionError
from .openstack_conf import (
    ADMIN_PROJECT,
    ADMIN_ROLE,
    ADMIN_USER,
    DOMAIN,
    SERVICE_PROJECT,
    SERVICE_ROLE,
    SERVICE_USERS,
    SERVICES,
    Addresses,
    OpenStackError,
    Secrets,
    console_line,
    desired_endpoints,
    INSTANCE_KEY,
    pick_image,
    plan_boot_volume,
    plan_demo_server,
    plan_catalog,
)
from .settings import Settings
from .steps import StepResult
from .target import Target

Log = Callable[[str], None]
LOCAL = "127.0.0.1"


def _print(message: str) -> None:
    print(message, flush=True)


# --- HTTP ------------------------------------------------------------------------------------
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
    return osp.wait_for(f"{what} to answer at {url}", lambda: answers(url), timeout, interval=0.5)


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
                if e.status not in (502, 503, 504) or method == "POST" or time.monotonic() > deadline:
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


def _cloud(settings: Settings, sec: Secrets, wait: float = 0.0, retry_s: float = RETRY_S) -> Cloud:
    """An admin session; with ``wait``, retried that long while Keystone is (re)starting.

    ``retry_s``: how long its requests ride out a restarting service (0 for quick probes).
    """
    make = lambda: Cloud(settings, sec.admin_password, retry_s)  # noqa: E731
    return osp_retry(make, wait) if wait else make()


# --- Keystone resources: projects, users, roles, catalog --------------------------------------
def ensure_keystone_resources(cloud: Cloud, settings: Settings, sec: Secrets, addrs: Addresses) -> list[str]:
    """Project ``service``, users glance/cinder (passwords of ``sec``) with role admin on it, services and endpoints."""
    did: list[str] = []
    domain = cloud.domain_id()
    projects = cloud.find("projects", name=SERVICE_PROJECT, domain_id=domain)
    if projects:
        project_id = str(projects[0]["id"])
    else:
        body = {"project": {"name": SERVICE_PROJECT, "domain_id": domain, "description": "OpenStack service users"}}
        project_id = str(cloud.call("POST", f"{cloud.keystone}/projects", body)["project"]["id"])
        did.append(f"created project {SERVICE_PROJECT}")
    roles = cloud.find("roles", name=ADMIN_ROLE)
    if not roles:
        raise OpenStackError(f"Keystone has no role {ADMIN_ROLE!r}", hint="keystone-manage bootstrap makes it")
    role_id = str(roles[0]["id"])
    service_roles = cloud.find("roles", name=SERVICE_ROLE)
    if service_roles:
        service_role_id = str(service_roles[0]["id"])
    else:
        service_role_id = str(cloud.call("POST", f"{cloud.keystone}/roles", {"role": {"name": SERVICE_ROLE}})["role"]["id"])
        did.append(f"created role {SERVICE_ROLE}")
    for user, attr in SERVICE_USERS:
        password = getattr(sec, attr)
        found = cloud.find("users", name=user, domain_id=domain)
        if not found:
            body = {"user": {"name": user, "domain_id": domain, "password": password, "enabled": True, "default_project_id": project_id}}
            user_id = str(cloud.call("POST", f"{cloud.keystone}/users", body)["user"]["id"])
            did.append(f"created user {user}")
        else:
            user_id = str(found[0]["id"])
            if not osp_retry(lambda: can_authenticate(settings, user, password), RETRY_S):
                cloud.call("PATCH", f"{cloud.keystone}/users/{user_id}", {"user": {"password": password, "enabled": True}})
                did.append(f"new password for user {user}")
        for rid, rname in ((role_id, ADMIN_ROLE), (service_role_id, SERVICE_ROLE)):
            grant = f"{cloud.keystone}/projects/{project_id}/users/{user_id}/roles/{rid}"
            if cloud.status("HEAD", grant) != 204:
                cloud.call("PUT", grant)
                did.append(f"role {rname} for {user} on {SERVICE_PROJECT}")
    did += ensure_catalog(cloud, settings, addrs)
    return did


def ensure_catalog(cloud: Cloud, settings: Settings, addrs: Addresses) -> list[str]:
    """Services and endpoints as :func:`plan_catalog` says; what was done (empty: nothing)."""
    region = settings.openstack.region
    if cloud.status("GET", f"{cloud.keystone}/regions/{region}") == 404:
        cloud.call("POST", f"{cloud.keystone}/regions", {"region": {"id": region}})
    desired = desired_endpoints(settings, addrs)
    services = cloud.find("services")
    endpoints = cloud.find("endpoints")
    actions = plan_catalog(desired, services, endpoints, region)
    by_type = {str(s["type"]): str(s["id"]) for s in services}
    defs = {s.type: s for s in SERVICES}
    for a in actions:
        if a.kind == "service":
            d = defs[a.service_type]
            body = {"service": {"name": d.name, "type": d.type, "description": d.description, "enabled": True}}
            by_type[a.service_type] = str(cloud.call("POST", f"{cloud.keystone}/services", body)["service"]["id"])
        elif a.kind == "create":
            body = {"endpoint": {"service_id": by_type[a.service_type], "interface": a.interface, "url": a.url, "region_id": region, "enabled": True}}
            cloud.call("POST", f"{cloud.keystone}/endpoints", body)
        elif a.kind == "update":
            cloud.call("PATCH", f"{cloud.keystone}/endpoints/{a.endpoint_id}", {"endpoint": {"url": a.url, "region_id": region}})
        elif a.kind == "delete":
            cloud.call("DELETE", f"{cloud.keystone}/endpoints/{a.endpoint_id}")
    return [a.describe() for a in actions]


# --- where things are on this host ---------------------------------------------------------------
def host_profile(target: Target, settings: Settings) -> osp.OpenStackProfile:
    """The profile provisioning recorded on this host (the settings' otherwise)."""
    try:
        name = target.read(os.path.join(settings.state_dir, osp.PROFILE_NAME)).decode().strip()
    except FileNotFoundError:
        name = settings.profile
    return osp.profile(name)


def wait_keystone(settings: Settings, timeout: float | None = None) -> float:
    """Wait until Keystone answers on this host."""
    o = settings.openstack
    return wait_answering("Keystone", f"http://{LOCAL}:{o.keystone_port}/v3", timeout or o.start_timeout_s)


def admin_cloud(target: Target, settings: Settings, sec: Secrets, log: Log, reset: bool = True) -> tuple[Cloud, list[str]]:
    """An admin session; when Keystone refuses the admin password of ``sec`` (and ``reset``), bootstrap resets it."""
    wait_keystone(settings)
    try:
        return _cloud(settings, sec, RETRY_S), []
    except HttpError as e:
        if e.status != 401 or not reset:
            raise
    log("Keystone refused this instance's admin password: resetting it with keystone-manage bootstrap")
    osp.keystone_bootstrap(target, settings, sec.admin_password)
    return _cloud(settings, sec, RETRY_S), ["reset the admin password (keystone-manage bootstrap)"]


# --- per-instance: new secrets -------------------------------------------------------------------
def rotate_secrets(target: Target, settings: Settings, info: Any, log: Log = _print) -> StepResult:
    """Give this instance its own secrets; nothing of the image's (the builder's) stays valid.

    Works from an image whose scrub removed the builder's secrets (``secrets.json``, openrc,
    Fernet and credential keys, libvirt secret values): it needs none of them, only root on
    MariaDB's socket, the broker's cookie file and the cephx keyring of client.volumes.

    Unit ordering: once per new instance-id, ``After=coa-ceph-keys.service mariadb.service
    rabbitmq-server.service``, ``Before=`` Keystone, Glance and Cinder (so they start with the new
    secrets; when run by hand while they run, they are restarted).

    A run that dies half-way left the new secrets in a pending file (root, 0600); the next
    run installs the same ones, so every service converges on one set. The admin password
    is printed once, on the console, when everything is in place.
    """
    start = time.monotonic()
    prof = host_profile(target, settings)
    addrs = Addresses.from_info(info)
    # The image's scrub may have removed the builder's secrets file: nothing here needs it.
    old = osp.load_secrets(target, settings)
    pending = osp.pending_path(settings)
    new = osp.load_secrets(target, settings, pending)
    if new is None:
        new = Secrets.generate()
        osp.save_secrets(target, settings, new, pending)
        log("generated new secrets for this instance (held in a root-only pending file until installed)")
    else:
        log("resuming an interrupted rotation with its pending secrets")
    done: list[str] = []
    osp.wait_mysql(target)
    done += osp.ensure_database(target, settings, new)
    if osp.ensure_cookie(target, new.erlang_cookie, prof.broker_unit, log):
        done.append("Erlang cookie")
    osp.wait_rabbit(target)
    done += osp.ensure_rabbit(target, new)
    for repo in osp.KEY_REPOSITORIES:
        osp.new_key_repository(target, repo)
    done.append("Fernet and credential keys")
    osp.purge_keystone_credentials(target)
    changed = osp.write_configs(target, settings, prof, new, addrs)
    done.append("wrote " + ", ".join(os.path.basename(f.path) for f in changed))
    osp.keystone_bootstrap(target, settings, new.admin_password)
    done.append("admin password")
    done += osp.ensure_libvirt_secret(target, settings, new)
    osp.save_secrets(target, settings, new)
    target.run(["rm", "-f", pending])
    restarted = osp.restart_if_active(target, list(prof.service_units), log, queue=True)
    if restarted:
        done.append("restarted " + " ".join(restarted))
    renewed = new.differing(old) if old else [f.name for f in dataclasses.fields(Secrets)]
    log(f"renewed {len(renewed)} secrets: {', '.join(renewed)}")
    # The one line that shows a secret: the console log (get-console-output) is how the owner learns it.
    print(console_line(addrs, new.admin_password), flush=True)
    return StepResult("openstack.secrets", True, "; ".join(done), time.monotonic() - start)


# --- per-boot: follow the address ----------------------------------------------------------------
def reconcile(target: Target, settings: Settings, info: Any, log: Log = _print) -> StepResult:
    """Configuration, catalog, service users and libvirt secret for this boot's addresses; no-op when current.

    Unit ordering: every boot, ``After=keystone.service coa-openstack-secrets.service``,
    ``Before=`` Glance and Cinder (their configuration is rewritten before they start).
    """
    start = time.monotonic()
    prof = host_profile(target, settings)
    addrs = Addresses.from_info(info)
    sec = osp.require_secrets(target, settings)
    did: list[str] = []
    changed = osp.write_configs(target, settings, prof, sec, addrs)
    if changed:
        did.append("rewrote " + ", ".join(f.path for f in changed))
        restarted = osp.restart_if_active(target, osp.units_of(changed), log, queue=True)
        if restarted:
            did.append("restarted " + " ".join(restarted))
    cloud, reset = admin_cloud(target, settings, sec, log)
    did += reset
    did += ensure_keystone_resources(cloud, settings, sec, addrs)
    did += osp.ensure_libvirt_secret(target, settings, sec)
    where = f"public {addrs.public_host}, private {addrs.private_ip}"
    if did:
        for d in did:
            log(f"changed: {d}")
        return StepResult("openstack.endpoints", True, f"{where}: " + "; ".join(did), time.monotonic() - start)
    log(f"unchanged: configuration, catalog and service users already follow {where}")
    return StepResult("openstack.endpoints", False, f"unchanged ({where})", time.monotonic() - start)


# --- waiting for Glance and Cinder ----------------------------------------------------------------
def volume_backend_ready(cloud: Cloud) -> bool:
    """True when a cinder-volume service is up and the scheduler knows its pool."""
    try:
        services = cloud.call("GET", f"{cloud.cinder}/os-services?binary=cinder-volume").get("services", [])
        if not any(s.get("state") == "up" and s.get("status") == "enabled" for s in services):
            return False
        return bool(cloud.call("GET", f"{cloud.cinder}/scheduler-stats/get_pools").get("pools"))
    except (Unreachable, HttpError):
        return False


def wait_apis(settings: Settings, sec: Secrets, timeout: float | None = None) -> dict[str, float]:
    """Wait until Keystone issues a token, Glance and Cinder answer and the volume backend is ready."""
    start = time.monotonic()
    budget = timeout or settings.openstack.start_timeout_s
    marks: dict[str, float] = {}
    wait_keystone(settings, budget)
    cloud = _cloud(settings, sec, wait=budget - (time.monotonic() - start), retry_s=0)
    marks["keystone"] = time.monotonic() - start
    left = lambda: max(5.0, budget - (time.monotonic() - start))  # noqa: E731
    osp.wait_for("Glance to answer", lambda: _ok(lambda: cloud.call("GET", f"{cloud.glance}/images?limit=1")), left(), 0.5)
    marks["glance"] = time.monotonic() - start
    osp.wait_for("Cinder to answer", lambda: _ok(lambda: cloud.call("GET", f"{cloud.cinder}/volumes?limit=1")), left(), 0.5)
    marks["cinder"] = time.monotonic() - start
    osp.wait_for("the Cinder volume backend", lambda: volume_backend_ready(cloud), left(), 1.0)
    marks["volume-backend"] = time.monotonic() - start
    return marks


def _ok(fn: Callable[[], Any]) -> bool:
    try:
        fn()
        return True
    except (Unreachable, HttpError):
        return False


def osp_retry(fn: Callable[[], Any], timeout: float) -> Any:
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


# --- the golden image ----------------------------------------------------------------------------
def list_images(cloud: Cloud, name: str) -> list[dict[str, Any]]:
    """Glance images called ``name`` (any status)."""
    q = urllib.parse.urlencode({"name": name, "limit": 100})
    return list(cloud.call("GET", f"{cloud.glance}/images?{q}").get("images", []))


def image_id(cloud: Cloud, name: str) -> str | None:
    """The id of the active image called ``name``, or None."""
    keep, _ = pick_image(list_images(cloud, name), name)
    return keep


def register_image(cloud: Cloud, name: str, path: str, description: str, timeout: float = 600) -> tuple[bool, str]:
    """Upload ``path`` as a public raw image ``name`` once; failed or partial uploads are deleted first."""
    keep, drop = pick_image(list_images(cloud, name), name)
    for i in drop:
        cloud.call("DELETE", f"{cloud.glance}/images/{i}", ok=(204, 404))
    if keep:
        return False, keep
    size = os.path.getsize(path)
    body = {"name": name, "disk_format": "raw", "container_format": "bare", "visibility": "public",
            "min_disk": 1, "description": description, "os_type": "linux"}
    image = cloud.call("POST", f"{cloud.glance}/images", body)
    with open(path, "rb") as f:
        cloud.call("PUT", f"{cloud.glance}/images/{image['id']}/file", data=f, length=size, ok=(204,), timeout=timeout)
    osp.wait_for(f"image {image['id']} to become active",
                 lambda: cloud.call("GET", f"{cloud.glance}/images/{image['id']}").get("status") == "active", 120, 1.0)
    return True, str(image["id"])


# --- per-instance: the bootable volume ------------------------------------------------------------
def list_volumes(cloud: Cloud, name: str) -> list[dict[str, Any]]:
    """The admin project's volumes called ``name`` (detail view)."""
    q = urllib.parse.urlencode({"name": name, "limit": 1000})
    vols = cloud.call("GET", f"{cloud.cinder}/volumes/detail?{q}").get("volumes", [])
    return [v for v in vols if v.get("name") == name]


def ensure_boot_volume(target: Target, settings: Settings, info: Any, log: Log = _print) -> StepResult:
    """Make the instance's bootable volume from the golden image, exactly once, ever.

    Unit ordering: once per new instance-id, ``After=`` Glance, Cinder and
    ``coa-openstack-endpoints.service``.

    Identity is the name: a relaunched instance finds its image's volume (same Ceph, same
    Cinder database) and keeps it. A run that died mid-creation left a volume in
    ``creating`` (cinder-volume sets it to ``error`` when it restarts) or ``error``: failed
    copies are deleted before a new one is made, and nothing new is made while one is
    still being worked on. Surplus copies are deleted (never an attached one).
    """
    start = time.monotonic()
    o = settings.openstack
    name = settings.boot_volume_name
    sec = osp.require_secrets(target, settings)
    marks = wait_apis(settings, sec)
    log("APIs answer after " + ", ".join(f"{k} {v:.1f}s" for k, v in marks.items()))
    cloud = _cloud(settings, sec)
    deadline = time.monotonic() + o.start_timeout_s
    did: list[str] = []
    created = 0
    busy_since: dict[str, float] = {}
    while True:
        plan = plan_boot_volume(list_volumes(cloud, name), name)
        for vid in plan.delete:
            log(f"deleting volume {vid} ({name}: {plan.reason})")
            cloud.call("DELETE", f"{cloud.cinder}/volumes/{vid}", ok=(202, 404))
            did.append(f"deleted {vid}")
        if plan.keep and not plan.wait and not plan.delete:
            detail = f"{name} is volume {plan.keep}" + (f" ({'; '.join(did)})" if did else "")
            if created:
                return StepResult("openstack.boot-volume", True, f"created {detail}", time.monotonic() - start)
            log(f"unchanged: {detail}")
            return StepResult("openstack.boot-volume", bool(did), f"kept {detail}", time.monotonic() - start)
        if time.monotonic() > deadline:
            raise OpenStackError(f"{name} did not settle within {o.start_timeout_s}s: {plan.reason}")
        for vid in plan.wait:
            since = busy_since.setdefault(vid, time.monotonic())
            if time.monotonic() - since > o.start_timeout_s / 2:
                # Stuck (its creator died and cinder-volume never restarted): mark it failed, so the next plan deletes it.
                log(f"volume {vid} stuck for {time.monotonic() - since:.0f}s: resetting it to error")
                cloud.call("POST", f"{cloud.cinder}/volumes/{vid}/action", {"os-reset_status": {"status": "error"}}, ok=(202, 404))
        if plan.create:
            if created >= 3:
                raise OpenStackError(f"{name}: three creations failed", hint="see `journalctl -u cinder-volume`")
            image = image_id(cloud, o.guest_image_name)
            if image is None:
                raise OpenStackError(f"The golden image {o.guest_image_name!r} is not in Glance", hint="re-run provisioning")
            body = {"volume": {"name": name, "size": o.boot_volume_size_gib, "imageRef": image,
                               "description": "Bootable volume of this instance, cloned from the golden guest image"}}
            vol = cloud.call("POST", f"{cloud.cinder}/volumes", body)["volume"]
            created += 1
            log(f"creating volume {vol['id']} ({name}) from image {image}")
        time.sleep(1.0 if (plan.wait or plan.create) else 0.2)


# --- compute and network ------------------------------------------------------------------------------
#: Nova API microversion for the demo server's requests (2.37: ``networks`` is required, "none"/"auto" allowed).
NOVA_MICROVERSION = {"X-OpenStack-Nova-API-Version": "2.37"}


def compute_ready(cloud: Cloud) -> str | None:
    """None when nova-compute is up and its hypervisor mapped, and Neutron's L2 and DHCP agents are alive; else what is missing."""
    try:
        services = cloud.call("GET", f"{cloud.nova}/os-services?binary=nova-compute").get("services", [])
        if not any(s.get("state") == "up" and s.get("status") == "enabled" for s in services):
            return "nova-compute is not up"
        if not cloud.call("GET", f"{cloud.nova}/os-hypervisors").get("hypervisors"):
            return "no hypervisor mapped (nova-manage cell_v2 discover_hosts)"
        agents = cloud.call("GET", f"{cloud.neutron}/agents").get("agents", [])
        alive = {a.get("binary") for a in agents if a.get("alive") and a.get("admin_state_up")}
        missing = [b for b in ("neutron-linuxbridge-agent", "neutron-dhcp-agent") if b not in alive]
        if missing:
            return " and ".join(missing) + " not alive"
    except (Unreachable, HttpError) as e:
        return str(e).splitlines()[0][:160]
    return None


def wait_compute(cloud: Cloud, timeout: float) -> float:
    """Wait until :func:`compute_ready`; the seconds waited (OpenStackError naming what is missing)."""
    start = time.monotonic()
    why: list[str | None] = [None]

    def probe() -> bool:
        why[0] = compute_ready(cloud)
        return why[0] is None

    try:
        return osp.wait_for("Nova compute and Neutron's agents", probe, timeout, 1.0)
    except ProvisionError:
        raise OpenStackError(f"Compute not ready after {time.monotonic() - start:.0f}s: {why[0]}", hint="see `journalctl -u nova-compute -u neutron-linuxbridge-agent -u neutron-dhcp-agent`") from None


def ensure_network(cloud: Cloud, settings: Settings) -> list[str]:
    """The guests' flat provider network and its DHCP subnet, and the demo flavor; what was made."""
    o = settings.openstack
    did: list[str] = []
    nets = cloud.call("GET", f"{cloud.neutron}/networks?{urllib.parse.urlencode({'name': o.network_name})}").get("networks", [])
    if nets:
        net_id = str(sorted(nets, key=lambda n: str(n.get("created_at", "")))[0]["id"])
    else:
        body = {"network": {"name": o.network_name, "shared": True, "provider:network_type": "flat",
                            "provider:physical_network": o.provider_physnet, "port_security_enabled": False}}
        net_id = str(cloud.call("POST", f"{cloud.neutron}/networks", body)["network"]["id"])
        did.append(f"created network {o.network_name} (flat on {o.provider_physnet})")
    subnets = cloud.call("GET", f"{cloud.neutron}/subnets?network_id={net_id}").get("subnets", [])
    if not subnets:
        first, last = o.provider_pool
        body = {"subnet": {"name": o.network_name + "-v4", "network_id": net_id, "ip_version": 4, "cidr": o.provider_cidr,
                           "gateway_ip": o.provider_gateway, "enable_dhcp": True,
                           "allocation_pools": [{"start": first, "end": last}], "dns_nameservers": []}}
        cloud.call("POST", f"{cloud.neutron}/subnets", body)
        did.append(f"created subnet {o.provider_cidr} (DHCP {first}-{last})")
    flavors = cloud.call("GET", f"{cloud.nova}/flavors/detail?is_public=None").get("flavors", [])
    if not any(f.get("name") == o.flavor_name for f in flavors):
        body = {"flavor": {"name": o.flavor_name, "ram": o.flavor_ram_mib, "vcpus": o.flavor_vcpus, "disk": 0, "os-flavor-access:is_public": True}}
        cloud.call("POST", f"{cloud.nova}/flavors", body)
        did.append(f"created flavor {o.flavor_name} ({o.flavor_ram_mib} MiB, {o.flavor_vcpus} vCPU, boots from a volume)")
    return did


def network_id(cloud: Cloud, settings: Settings) -> str:
    """The id of the guests' network (OpenStackError when provisioning never made it)."""
    name = settings.openstack.network_name
    nets = cloud.call("GET", f"{cloud.neutron}/networks?{urllib.parse.urlencode({'name': name})}").get("networks", [])
    if not nets:
        raise OpenStackError(f"Network {name!r} does not exist", hint="re-run provisioning")
    return str(sorted(nets, key=lambda n: str(n.get("created_at", "")))[0]["id"])


def flavor_id(cloud: Cloud, settings: Settings) -> str:
    """The id of the demo flavor."""
    name = settings.openstack.flavor_name
    for f in cloud.call("GET", f"{cloud.nova}/flavors/detail?is_public=None").get("flavors", []):
        if f.get("name") == name:
            return str(f["id"])
    raise OpenStackError(f"Flavor {name!r} does not exist", hint="re-run provisioning")


def list_servers(cloud: Cloud, name: str) -> list[dict[str, Any]]:
    """The admin project's servers called exactly ``name`` (detail view)."""
    q = urllib.parse.urlencode({"name": f"^{name}$"})
    return [s for s in cloud.call("GET", f"{cloud.nova}/servers/detail?{q}").get("servers", []) if s.get("name") == name]


def release_orphaned(cloud: Cloud, volume: dict[str, Any], log: Log) -> bool:
    """Detach ``volume`` from servers that no longer exist (a build that failed half-way can leave that); True if it did.

    Only an admin status reset clears such an attachment: Cinder refuses to delete the
    attachment of a server it believes Nova still uses unless Nova itself asks.
    """
    servers = [a.get("server_id") for a in volume.get("attachments", []) if a.get("server_id")]
    if volume.get("status") != "in-use" or not servers:
        return False
    if any(cloud.status("GET", f"{cloud.nova}/servers/{sid}") != 404 for sid in servers):
        return False
    log(f"volume {volume['id']} is attached to deleted server(s) {', '.join(servers)}: resetting it to available")
    body = {"os-reset_status": {"status": "available", "attach_status": "detached"}}
    cloud.call("POST", f"{cloud.cinder}/volumes/{volume['id']}/action", body, ok=(202,))
    return True


def ensure_demo_server(target: Target, settings: Settings, info: Any, log: Log = _print) -> StepResult:
    """One demo server, booted by this instance from its bootable volume, running; never a second one.

    Unit ordering: every boot, ``After=`` the boot volume job and the Nova and Neutron units.
    On a reboot, Nova resumes the server itself (``resume_guests_state_on_host_boot``) and
    this finds it; on a new instance the previous instance's server is deleted first (its
    volume connection names the old monitor address and libvirt secret) and the volume,
    detached by that, boots a new one.
    """
    start = time.monotonic()
    o = settings.openstack
    instance_id = str(getattr(info, "instance_id"))
    sec = osp.require_secrets(target, settings)
    cloud = _cloud(settings, sec, wait=o.start_timeout_s)
    waited = wait_compute(cloud, o.start_timeout_s)
    log(f"compute and network agents ready after {waited:.1f}s")
    deadline = time.monotonic() + o.start_timeout_s
    did: list[str] = []
    created = 0
    while True:
        plan = plan_demo_server(list_servers(cloud, o.server_name), o.server_name, instance_id)
        for sid in plan.delete:
            if f"deleted {sid}" not in did:
                log(f"deleting server {sid} ({plan.reason})")
                did.append(f"deleted {sid}")
            cloud.call("DELETE", f"{cloud.nova}/servers/{sid}", ok=(204, 404, 409))
        if plan.keep and plan.start:
            log(f"starting server {plan.keep} (it was stopped)")
            cloud.call("POST", f"{cloud.nova}/servers/{plan.keep}/action", {"os-start": None}, ok=(202, 409))
            did.append(f"started {plan.keep}")
        if plan.keep and not plan.delete and not plan.start and not plan.wait:
            server = cloud.call("GET", f"{cloud.nova}/servers/{plan.keep}")["server"]
            if server.get("status") == "ACTIVE":
                detail = f"{o.server_name} is server {plan.keep}, ACTIVE"
                if created or did:
                    return StepResult("openstack.demo-server", True, f"{detail} ({'; '.join(did)})", time.monotonic() - start)
                log(f"unchanged: {detail}")
                return StepResult("openstack.demo-server", False, detail, time.monotonic() - start)
        if time.monotonic() > deadline:
            raise OpenStackError(f"{o.server_name} did not become ACTIVE within {o.start_timeout_s}s: {plan.reason}",
                                 hint="see `journalctl -u nova-compute` and `openstack server show`")
        if plan.create:
            if created >= 3:
                raise OpenStackError(f"{o.server_name}: three boots failed", hint="see `journalctl -u nova-compute`")
            all_vols = list_volumes(cloud, settings.boot_volume_name)
            for v in all_vols:
                if release_orphaned(cloud, v, log):
                    did.append(f"released volume {v['id']} from a deleted server")
            vols = [v for v in all_vols if v.get("status") == "available"]
            if vols:
                body = {"server": {
                    "name": o.server_name,
                    "flavorRef": flavor_id(cloud, settings),
                    "networks": [{"uuid": network_id(cloud, settings)}],
                    "block_device_mapping_v2": [{"boot_index": 0, "uuid": vols[0]["id"], "source_type": "volume",
                                                 "destination_type": "volume", "delete_on_termination": False}],
                    "metadata": {INSTANCE_KEY: instance_id},
                }}
                server = cloud.call("POST", f"{cloud.nova}/servers", body, headers=NOVA_MICROVERSION)["server"]
                created += 1
                log(f"booting server {server['id']} ({o.server_name}) from volume {vols[0]['id']}")
                did.append(f"booted {server['id']} from volume {vols[0]['id']}")
        time.sleep(1.0)


# --- readiness checks (for provision.ready, through the agent) ---------------------------------------
def check(settings: Settings, target: Target, what: str) -> tuple[bool, str]:
    """One readiness check: ``keystone`` (a token), ``glance``, ``cinder`` (they answer), ``boot-volume``."""
    sec = osp.load_secrets(target, settings)
    if sec is None:
        return False, "no secrets on this host (not provisioned)"
    try:
        cloud = _cloud(settings, sec, retry_s=0)
        if what == "keystone":
            return True, f"token for {ADMIN_USER} (project {cloud.project_id[:8]}...)"
        if what == "glance":
            n = len(cloud.call("GET", f"{cloud.glance}/images?limit=100").get("images", []))
            return True, f"answers ({n} images)"
        if what == "cinder":
            n = len(cloud.call("GET", f"{cloud.cinder}/volumes?limit=1000").get("volumes", []))
            return True, f"answers ({n} volumes)"
        if what == "boot-volume":
            vols = list_volumes(cloud, settings.boot_volume_name)
            good = [v for v in vols if v.get("status") in ("available", "in-use")]
            ok = len(vols) == 1 and len(good) == 1
            states = ", ".join(f"{v['id'][:8]} {v.get('status')}" for v in vols) or "none"
            return ok, f"{settings.boot_volume_name}: {states}"
        if what == "compute":
            why = compute_ready(cloud)
            return why is None, why or "nova-compute up, hypervisor mapped, Neutron agents alive"
        if what == "demo-server":
            return demo_server_state(cloud, settings, target)
    except (Unreachable, HttpError) as e:
        return False, str(e).splitlines()[0][:200]
    return False, f"unknown check {what!r}"


def demo_server_state(cloud: Cloud, settings: Settings, target: Target) -> tuple[bool, str]:
    """Exactly one demo server, ACTIVE, booted by this instance, its root disk the bootable volume."""
    import json as _json

    o = settings.openstack
    servers = list_servers(cloud, o.server_name)
    try:
        instance_id = _json.loads(target.read(os.path.join(settings.state_dir, "last-metadata.json")).decode()).get("instance_id")
    except (FileNotFoundError, ValueError):
        instance_id = None
    states = ", ".join(f"{s['id'][:8]} {s.get('status')}" for s in servers) or "none"
    if len(servers) != 1:
        return False, f"{o.server_name}: {states}"
    server = servers[0]
    if (server.get("metadata") or {}).get(INSTANCE_KEY) != instance_id:
        return False, f"{o.server_name}: {states}, booted by another instance"
    vols = {v["id"] for v in list_volumes(cloud, settings.boot_volume_name)}
    attached = {a.get("id") for a in server.get("os-extended-volumes:volumes_attached", [])}
    if not vols & attached:
        return False, f"{o.server_name}: {states}, {settings.boot_volume_name} not attached"
    return server.get("status") == "ACTIVE", f"{o.server_name}: {states}, root volume {settings.boot_volume_name}"


# --- command line (used by provisioning through the Target) -----------------------------------------
def main(argv: list[str] | None = None) -> int:
    """``python3 -m provision.openstack_boot COMMAND``: print one JSON line with the outcome."""
    from .settings import load_installed as load_settings
    from .target.local import LocalTarget

    parser = argparse.ArgumentParser(prog="python3 -m provision.openstack_boot")
    sub = parser.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("admin-check", help="the admin password of this host's secrets works (--reset: bootstrap it)")
    a.add_argument("--reset", action="store_true")
    k = sub.add_parser("keystone-resources", help="service project, users, roles, services, endpoints")
    k.add_argument("--private-ip", required=True)
    k.add_argument("--public-host", required=True)
    sub.add_parser("wait-apis", help="wait until Keystone, Glance, Cinder and the volume backend are ready")
    s = sub.add_parser("image-status", help="the id of the active image called NAME")
    s.add_argument("--name", required=True)
    r = sub.add_parser("register-image", help="upload FILE as public raw image NAME (once)")
    r.add_argument("--name", required=True)
    r.add_argument("--file", required=True)
    r.add_argument("--description", default="")
    c = sub.add_parser("check", help="one readiness check")
    c.add_argument("what", choices=["keystone", "glance", "cinder", "boot-volume", "compute", "demo-server"])
    w = sub.add_parser("wait-compute", help="wait until nova-compute is up and mapped and Neutron's agents are alive")
    w.add_argument("--timeout", type=float, default=300)
    sub.add_parser("network", help="the guests' network, subnet and the demo flavor (once)")
    args = parser.parse_args(argv)
    settings = load_settings()
    target = LocalTarget()
    out: dict[str, Any]
    try:
        if args.cmd == "check":
            ok, detail = check(settings, target, args.what)
            out = {"ok": ok, "detail": detail}
        else:
            sec = osp.require_secrets(target, settings)
            if args.cmd == "admin-check":
                _, did = admin_cloud(target, settings, sec, lambda m: None, reset=args.reset)
                out = {"changed": bool(did), "detail": "; ".join(did) or "admin authenticates"}
            elif args.cmd == "keystone-resources":
                cloud, did = admin_cloud(target, settings, sec, lambda m: None)
                did += ensure_keystone_resources(cloud, settings, sec, Addresses(args.private_ip, args.public_host))
                out = {"changed": bool(did), "detail": "; ".join(did) or "project, users, roles, services and endpoints current"}
            elif args.cmd == "wait-apis":
                out = {"changed": False, "marks": wait_apis(settings, sec)}
            elif args.cmd == "wait-compute":
                out = {"changed": False, "waited": wait_compute(_cloud(settings, sec, wait=60), args.timeout)}
            elif args.cmd == "network":
                did = ensure_network(_cloud(settings, sec, wait=60), settings)
                out = {"changed": bool(did), "detail": "; ".join(did) or "network, subnet and flavor exist"}
            elif args.cmd == "image-status":
                cloud = _cloud(settings, sec, wait=60)
                out = {"id": image_id(cloud, args.name)}
            else:
                cloud = _cloud(settings, sec, wait=60)
                changed, iid = register_image(cloud, args.name, args.file, args.description)
                out = {"changed": changed, "id": iid}
    except ProvisionError as e:
        print(json.dumps({"error": str(e).splitlines()[0]}), flush=True)
        return 1
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
