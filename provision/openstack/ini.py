"""What every service's configuration shares: the ini format, the managed-file headers,
the Keystone names, and the sections each service repeats (its database, its broker URL,
its Keystone authentication).

Pure and standard-library only (the boot agent renders on the instance).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from .. import tls
from ..exceptions import ConfigError
from ..settings import Settings
from .addresses import Addresses

#: The writer the managed files name in their first line. It is still the module's name from
#: before the split into this package, so the rendered text stays byte-identical (a changed
#: header would rewrite every file and restart its services on an instance updated in place).
WRITER = "provision/openstack_conf.py"
#: First line of the ini files we rewrite at boot.
HEADER = f"# Managed by ceph-openstack-ami ({WRITER}); rewritten at boot. Local edits are lost.\n"

#: Keystone's names: the domain of every user and project, the admin, the service users' project and roles.
DOMAIN = "Default"
ADMIN_USER = "admin"
ADMIN_PROJECT = "admin"
ADMIN_ROLE = "admin"
SERVICE_PROJECT = "service"
SERVICE_ROLE = "service"

MYSQL_SOCKET = "/run/mysqld/mysqld.sock"
RABBIT_USER = "openstack"


def managed(comment: str = "#") -> str:
    """The first line of a managed file that is not rewritten at boot, after ``comment``."""
    return f"{comment} Managed by ceph-openstack-ami ({WRITER}).\n"


@dataclass(frozen=True)
class FileSpec:
    """A file to write: content, mode and ownership, and the units that read it."""

    path: str
    content: str
    mode: int
    owner: str
    group: str
    units: tuple[str, ...]


Section = tuple[str, Sequence[tuple[str, object]]]


#: Behind the TLS proxies (:mod:`provision.openstack.proxy`): the service builds its links
#: from the request's ``Host`` and ``X-Forwarded-Proto`` (oslo.middleware's HTTPProxyToWSGI,
#: in the pipelines of Keystone, Glance, Cinder, Nova and Neutron; Placement has none, and its
#: version document's links are relative).
PROXY_HEADERS_SECTION: Section = ("oslo_middleware", [("enable_proxy_headers_parsing", True)])


def _value(v: object) -> str:
    """An ini value: booleans as ``true``/``false``, anything else as ``str`` gives it."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def render_ini(header: str, sections: Iterable[Section]) -> str:
    """An ini file: the header comment, then ``[section]`` blocks of ``key = value`` lines."""
    out = [header.rstrip("\n"), ""]
    for name, items in sections:
        out.append(f"[{name}]")
        for key, value in items:
            text = _value(value)
            if "\n" in text:
                raise ConfigError(f"Value of {name}.{key} spans lines")
            out.append(f"{key} = {text}")
        out.append("")
    return "\n".join(out)


def render_managed(sections: Iterable[Section]) -> str:
    """An ini file of ours under :data:`HEADER` (rewritten at boot)."""
    return render_ini(HEADER, sections)


def parse_ini(text: str) -> dict[str, dict[str, str]]:
    """The ``[section] key = value`` pairs of an ini text (comments ignored, last value wins)."""
    data: dict[str, dict[str, str]] = {}
    section = "DEFAULT"
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            data.setdefault(section, {})
            continue
        key, sep, value = line.partition("=")
        if sep:
            data.setdefault(section, {})[key.strip()] = value.strip()
    return data


def mysql_url(user: str, password: str, database: str) -> str:
    """SQLAlchemy URL through the local MariaDB socket (the database listens on no network)."""
    return f"mysql+pymysql://{user}:{password}@localhost/{database}?unix_socket={MYSQL_SOCKET}&charset=utf8mb4"


def database_section(section: str, user: str, password: str, database: str) -> Section:
    """A ``[database]``-style section: the local MariaDB socket, a small connection pool."""
    return (section, [("connection", mysql_url(user, password, database)), ("max_pool_size", 5), ("max_overflow", 10)])


def rabbit_url(password: str) -> str:
    """oslo.messaging transport URL of the local RabbitMQ."""
    return f"rabbit://{RABBIT_USER}:{password}@127.0.0.1:5672/"


def _service_user(settings: Settings, user: str, password: str) -> list[tuple[str, object]]:
    """The keystoneauth password items of service ``user`` in the service project."""
    return [
        ("auth_type", "password"),
        ("project_domain_name", DOMAIN),
        ("user_domain_name", DOMAIN),
        ("project_name", SERVICE_PROJECT),
        ("username", user),
        ("password", password),
        ("region_name", settings.openstack.region),
    ]


def authtoken_section(settings: Settings, addrs: Addresses, user: str, password: str) -> Section:
    """``[keystone_authtoken]``: how a service checks the tokens it is sent, as service ``user``."""
    return (
        "keystone_authtoken",
        [
            # Where a client is sent for a token: Keystone's public endpoint, over TLS.
            ("www_authenticate_uri", tls.https_url(addrs.public_host, settings.tls.keystone_port, "")),
            ("auth_url", f"http://{addrs.private_ip}:{settings.openstack.keystone_port}"),
            *_service_user(settings, user, password),
            ("http_connect_timeout", 10),
            ("http_request_max_retries", 3),
            # A service token must carry the "service" role to count (Cinder lets only Nova,
            # proven by its service token, delete the attachment of a volume Nova uses).
            ("service_token_roles", SERVICE_ROLE),
            ("service_token_roles_required", True),
        ],
    )


def service_auth_section(section: str, settings: Settings, addrs: Addresses, user: str, password: str, extra: Sequence[tuple[str, object]] = ()) -> Section:
    """A keystoneauth password section (``[placement]``, ``[neutron]``, ``[nova]`` ...) for service ``user``."""
    return (
        section,
        [
            ("auth_url", f"http://{addrs.private_ip}:{settings.openstack.keystone_port}/v3"),
            *_service_user(settings, user, password),
            ("valid_interfaces", "internal"),
            *extra,
        ],
    )
