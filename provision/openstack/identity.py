"""Keystone: keystone.conf and /root/openrc, the Fernet and credential key repositories, the
bootstrap (admin, roles, region), and the service project, users, roles and catalog.

:func:`plan_catalog` is pure (tested as a table); :func:`ensure_keystone_resources` applies it
through the API on the instance, at provisioning (:func:`catalog_step`, through the agent) and
at every boot (:func:`provision.openstack.instance.reconcile`).
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .. import tls
from ..settings import Settings
from ..steps import Log, outcome
from ..systemd import bounded, ensure_running, restart_if_active
from ..target import Target, command_line
from .addresses import Addresses, provisioning_addresses
from .api import LOCAL, RETRY_S, Cloud, HttpError, OpenStackError, agent, can_authenticate, retry, session, wait_answering
from .infra import MANAGE_TIMEOUT_S, SchemaCommands, mysql
from .ini import (
    ADMIN_PROJECT,
    ADMIN_ROLE,
    ADMIN_USER,
    DOMAIN,
    PROXY_HEADERS_SECTION,
    SERVICE_PROJECT,
    SERVICE_ROLE,
    FileSpec,
    database_section,
    render_managed,
)
from .profile import OpenStackProfile
from .secrets import Secrets, new_fernet_key, require_secrets

OPENRC_PATH = "/root/openrc"
INTERFACES = ("public", "internal", "admin")
#: The keystone database's schema.
SCHEMAS: SchemaCommands = {"keystone": [("keystone", ["keystone-manage", "db_sync"])]}


@dataclass(frozen=True)
class ServiceDef:
    """A catalog service and how its endpoint URL is built.

    ``port_setting`` names its port in ``settings.openstack`` (the service itself, internal
    and admin endpoints) and in ``settings.tls`` (the TLS proxy, the public endpoint).
    """

    name: str
    type: str
    description: str
    port_setting: str
    path: str


SERVICES: tuple[ServiceDef, ...] = (
    ServiceDef("keystone", "identity", "OpenStack Identity", "keystone_port", "/v3"),
    ServiceDef("glance", "image", "OpenStack Image", "glance_port", ""),
    ServiceDef("cinderv3", "volumev3", "OpenStack Block Storage", "cinder_port", "/v3/%(project_id)s"),
    ServiceDef("nova", "compute", "OpenStack Compute", "nova_port", "/v2.1"),
    ServiceDef("placement", "placement", "OpenStack Placement", "placement_port", ""),
    ServiceDef("neutron", "network", "OpenStack Networking", "neutron_port", ""),
)


#: Service users: keystone user name -> the Secrets field holding its password.
SERVICE_USERS: tuple[tuple[str, str], ...] = (
    ("glance", "glance_service"),
    ("cinder", "cinder_service"),
    ("nova", "nova_service"),
    ("placement", "placement_service"),
    ("neutron", "neutron_service"),
)


def endpoint_url(settings: Settings, service: ServiceDef, host: str, public: bool = False) -> str:
    """``https://HOST:TLS_PORT/PATH`` of ``service``'s TLS proxy (``public``), else ``http://HOST:PORT/PATH``."""
    if public:
        return tls.https_url(host, getattr(settings.tls, service.port_setting), service.path)
    return f"http://{host}:{getattr(settings.openstack, service.port_setting)}{service.path}"


def desired_endpoints(settings: Settings, addrs: Addresses) -> dict[tuple[str, str], str]:
    """(service type, interface) -> URL: public over TLS on the public name, internal and admin plain on the private IPv4."""
    out: dict[tuple[str, str], str] = {}
    for svc in SERVICES:
        for iface in INTERFACES:
            public = iface == "public"
            out[(svc.type, iface)] = endpoint_url(settings, svc, addrs.public_host if public else addrs.private_ip, public)
    return out


#: Where the boot's reconcile records what it last made Keystone hold (root only, under state_dir).
KEYSTONE_RECORD = "secrets/keystone-applied.sha256"


def keystone_digest(settings: Settings, sec: Secrets, addrs: Addresses) -> str:
    """SHA-256 of everything :func:`ensure_keystone_resources` makes Keystone hold: the catalog's
    URLs, the service users and their passwords, the admin password (never shown; a record)."""
    state = {
        "endpoints": sorted(f"{t} {i} {url}" for (t, i), url in desired_endpoints(settings, addrs).items()),
        "users": [[user, getattr(sec, attr)] for user, attr in SERVICE_USERS],
        "admin": sec.admin_password,
        "project": SERVICE_PROJECT, "roles": [ADMIN_ROLE, SERVICE_ROLE],
    }
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest() + "\n"


def auth_url(settings: Settings, host: str) -> str:
    """Keystone's public v3 URL on ``host`` (its TLS proxy)."""
    return tls.https_url(host, settings.tls.keystone_port, "/v3")


def render_keystone_conf(settings: Settings, sec: Secrets) -> str:
    """keystone.conf: SQL on MariaDB, Fernet tokens, the key repositories."""
    return render_managed(
        [
            ("DEFAULT", [("log_dir", "/var/log/keystone"), ("log_file", "keystone.log")]),
            database_section("database", "keystone", sec.keystone_db, "keystone"),
            ("token", [("provider", "fernet"), ("expiration", 3600)]),
            # bcrypt reads 72 bytes; the default 4096 makes Keystone warn at every login.
            ("identity", [("max_password_length", 72)]),
            ("fernet_tokens", [("key_repository", "/etc/keystone/fernet-keys/"), ("max_active_keys", 3)]),
            ("fernet_receipts", [("key_repository", "/etc/keystone/fernet-keys/")]),
            ("credential", [("key_repository", "/etc/keystone/credential-keys/")]),
            ("oslo_policy", [("policy_dirs", "/etc/keystone/policy.d")]),
            PROXY_HEADERS_SECTION,
        ],
    )


def keystone_files(settings: Settings, prof: OpenStackProfile, sec: Secrets) -> list[FileSpec]:
    """keystone.conf (0640 root:keystone)."""
    return [FileSpec("/etc/keystone/keystone.conf", render_keystone_conf(settings, sec), 0o640, "root", "keystone", (prof.keystone_unit,))]


def openrc_files(settings: Settings, sec: Secrets, addrs: Addresses) -> list[FileSpec]:
    """/root/openrc (0600 root)."""
    return [FileSpec(OPENRC_PATH, render_openrc(settings, sec, addrs), 0o600, "root", "root", ())]


def render_openrc(settings: Settings, sec: Secrets, addrs: Addresses) -> str:
    """/root/openrc: the admin credentials of this instance (mode 0600)."""
    env = [
        ("OS_AUTH_URL", auth_url(settings, addrs.public_host)),
        ("OS_IDENTITY_API_VERSION", "3"),
        ("OS_USERNAME", ADMIN_USER),
        ("OS_PASSWORD", sec.admin_password),
        ("OS_PROJECT_NAME", ADMIN_PROJECT),
        ("OS_USER_DOMAIN_NAME", DOMAIN),
        ("OS_PROJECT_DOMAIN_NAME", DOMAIN),
        ("OS_REGION_NAME", settings.openstack.region),
        ("OS_INTERFACE", "public"),
        ("OS_VOLUME_API_VERSION", "3"),
    ]
    files = tls.cert_files(settings)
    if files.own:  # self-signed: the clients trust exactly this instance's certificate
        env.append(("OS_CACERT", files.cert))
    lines = [
        "# Admin credentials of this instance; made at its first boot by ceph-openstack-ami.",
        "# Use: . /root/openrc && openstack token issue",
    ]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env]
    return "\n".join(lines) + "\n"


def parse_openrc(text: str) -> dict[str, str]:
    """The ``export NAME=VALUE`` assignments of an openrc."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("export ") and "=" in line:
            name, _, value = line[len("export "):].partition("=")
            parts = shlex.split(value) if value else [""]
            out[name.strip()] = parts[0] if parts else ""
    return out


@dataclass(frozen=True)
class CatalogAction:
    """One change to the catalog: create a service, create/update/delete an endpoint."""

    kind: str  # "service" | "create" | "update" | "delete"
    service_type: str
    interface: str = ""
    url: str = ""
    endpoint_id: str = ""

    def describe(self) -> str:
        """One line for the log."""
        if self.kind == "service":
            return f"create service {self.service_type}"
        if self.kind == "delete":
            return f"delete duplicate {self.service_type} {self.interface} endpoint {self.endpoint_id}"
        return f"{self.kind} {self.service_type} {self.interface} endpoint -> {self.url}"


def plan_catalog(
    desired: Mapping[tuple[str, str], str],
    services: Sequence[Mapping[str, Any]],
    endpoints: Sequence[Mapping[str, Any]],
    region: str,
) -> list[CatalogAction]:
    """The changes that make the catalog hold exactly ``desired`` in ``region``; empty when it does.

    Args:
        desired: (service type, interface) -> URL.
        services: Keystone's ``GET /v3/services`` entries (``id``, ``type``).
        endpoints: Keystone's ``GET /v3/endpoints`` entries (``id``, ``service_id``, ``interface``, ``url``, ``region_id``).
        region: the region the endpoints belong to.
    """
    by_type: dict[str, str] = {}
    for s in services:
        by_type.setdefault(str(s.get("type")), str(s.get("id")))
    actions: list[CatalogAction] = []
    for stype in sorted({t for t, _ in desired}):
        if stype not in by_type:
            actions.append(CatalogAction("service", stype))
    for (stype, iface), url in sorted(desired.items()):
        sid = by_type.get(stype)
        found = [e for e in endpoints if sid and e.get("service_id") == sid and e.get("interface") == iface]
        found.sort(key=lambda e: (e.get("url") != url, e.get("region_id") != region, str(e.get("id"))))
        if not found:
            actions.append(CatalogAction("create", stype, iface, url))
            continue
        keep, extra = found[0], found[1:]
        if keep.get("url") != url or keep.get("region_id") != region:
            actions.append(CatalogAction("update", stype, iface, url, str(keep.get("id"))))
        for e in extra:
            actions.append(CatalogAction("delete", stype, iface, str(e.get("url")), str(e.get("id"))))
    return actions


KEY_REPOSITORIES = ("/etc/keystone/fernet-keys", "/etc/keystone/credential-keys")


def key_repository_ready(target: Target, path: str) -> bool:
    """True when a Keystone key repository has its primary (1) and staged (0) keys."""
    return target.run(["test", "-s", f"{path}/0", "-a", "-s", f"{path}/1"], check=False).ok


def new_key_repository(target: Target, path: str) -> None:
    """Replace a Keystone key repository with two new keys (0 staged, 1 primary), keystone-owned.

    Written next to the old one and swapped in, so the repository is never half-made.
    """
    tmp = path + ".new"
    old = path + ".old"
    target.run(["rm", "-rf", tmp, old])
    target.run(["install", "-d", "-o", "keystone", "-g", "keystone", "-m", "0700", tmp])
    for index in ("0", "1"):
        target.put(f"{tmp}/{index}", new_fernet_key(), 0o600, "keystone", "keystone")
    target.run("if [ -e %s ]; then mv %s %s; fi && mv %s %s && rm -rf %s", path, path, old, tmp, path, old)


def purge_keystone_credentials(target: Target) -> None:
    """Delete stored credentials (encrypted with the old credential keys) and application credentials."""
    sql = (
        "DELETE FROM keystone.credential;\n"
        "DELETE FROM keystone.application_credential_role;\n"
        "DELETE FROM keystone.application_credential_access_rule;\n"
        "DELETE FROM keystone.application_credential;\n"
    )
    mysql(target, sql)


def renew_keys(target: Target) -> list[str]:
    """A new instance's keys: new Fernet and credential repositories, the old credentials purged."""
    for repo in KEY_REPOSITORIES:
        new_key_repository(target, repo)
    purge_keystone_credentials(target)
    return ["Fernet and credential keys"]


KEYSTONE_BOOTSTRAP = [
    "keystone-manage", "bootstrap",
    "--bootstrap-username", "admin",
    "--bootstrap-project-name", "admin",
    "--bootstrap-role-name", "admin",
]


def keystone_bootstrap(target: Target, settings: Settings, admin_password: str) -> None:
    """``keystone-manage bootstrap``: admin project, user (this password), roles and region; no endpoints.

    The password travels on stdin into the environment variable keystone-manage reads.
    """
    argv = ["runuser", "-u", "keystone", "--", *KEYSTONE_BOOTSTRAP, "--bootstrap-region-id", settings.openstack.region]
    line = "read -r OS_BOOTSTRAP_PASSWORD && export OS_BOOTSTRAP_PASSWORD && exec " + command_line(bounded(argv, MANAGE_TIMEOUT_S))
    target.run(line, stdin=admin_password + "\n")


def wait_keystone(settings: Settings, timeout: float | None = None) -> float:
    """Wait until Keystone answers on this host."""
    o = settings.openstack
    return wait_answering("Keystone", f"http://{LOCAL}:{o.keystone_port}/v3", timeout or o.start_timeout_s)


def admin_cloud(target: Target, settings: Settings, sec: Secrets, log: Log, reset: bool = True) -> tuple[Cloud, list[str]]:
    """An admin session; when Keystone refuses the admin password of ``sec`` (and ``reset``), bootstrap resets it."""
    wait_keystone(settings)
    try:
        return session(settings, sec, RETRY_S), []
    except HttpError as e:
        if e.status != 401 or not reset:
            raise
    log("Keystone refused this instance's admin password: resetting it with keystone-manage bootstrap")
    keystone_bootstrap(target, settings, sec.admin_password)
    return session(settings, sec, RETRY_S), ["reset the admin password (keystone-manage bootstrap)"]


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
        did += _ensure_service_user(cloud, settings, domain, project_id, (role_id, service_role_id), user, getattr(sec, attr))
    did += ensure_catalog(cloud, settings, addrs)
    return did


def _ensure_service_user(cloud: Cloud, settings: Settings, domain: str, project_id: str, role_ids: tuple[str, str], user: str, password: str) -> list[str]:
    """Service ``user`` with ``password``, enabled, with roles admin and service (``role_ids``) on the service project."""
    did: list[str] = []
    found = cloud.find("users", name=user, domain_id=domain)
    if not found:
        body: dict[str, Any] = {"user": {"name": user, "domain_id": domain, "password": password, "enabled": True, "default_project_id": project_id}}
        user_id = str(cloud.call("POST", f"{cloud.keystone}/users", body)["user"]["id"])
        did.append(f"created user {user}")
    else:
        user_id = str(found[0]["id"])
        if not retry(lambda: can_authenticate(settings, user, password), RETRY_S):
            cloud.call("PATCH", f"{cloud.keystone}/users/{user_id}", {"user": {"password": password, "enabled": True}})
            did.append(f"new password for user {user}")
    for rid, rname in zip(role_ids, (ADMIN_ROLE, SERVICE_ROLE), strict=True):
        grant = f"{cloud.keystone}/projects/{project_id}/users/{user_id}/roles/{rid}"
        if cloud.status("HEAD", grant) != 204:
            cloud.call("PUT", grant)
            did.append(f"role {rname} for {user} on {SERVICE_PROJECT}")
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


def keystone_step(target: Target, settings: Settings, prof: OpenStackProfile) -> tuple[bool, str]:
    """Fernet and credential keys, the bootstrap (admin, roles, region); Keystone running, admin authenticates."""
    sec = require_secrets(target, settings)
    did = []
    for repo in KEY_REPOSITORIES:
        if not key_repository_ready(target, repo):
            new_key_repository(target, repo)
            did.append(f"new keys in {repo}")
    admin = mysql(target, "SELECT COUNT(*) FROM keystone.local_user WHERE name = 'admin';\n").stdout.strip()
    if admin == "0":
        keystone_bootstrap(target, settings, sec.admin_password)
        did.append("bootstrapped (admin, roles, region)")
    if did:
        restart_if_active(target, [prof.keystone_unit])
    did += ensure_running(target, [prof.keystone_unit])
    state = agent(target, "admin-check", "--reset")
    if state.get("changed"):
        did.append(str(state.get("detail")))
    return outcome(did, "keys present, admin authenticates, Keystone running")


def catalog_step(target: Target, settings: Settings, ip: str) -> tuple[bool, str]:
    """Service project, service users and their roles, services and endpoints (through the API on the host)."""
    addrs = provisioning_addresses(target, settings, ip)
    r = agent(target, "keystone-resources", "--private-ip", addrs.private_ip, "--public-host", addrs.public_host)
    return bool(r.get("changed")), str(r.get("detail", ""))
