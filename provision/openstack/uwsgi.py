"""The APIs served by uWSGI under the distribution's init wrapper (Keystone, cinder-api,
placement-api, nova-api, neutron-api): our small ini for each, and the /etc/default file
that points the wrapper at it.

Pure renderers (settings in, text out) and the file list provisioning writes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import Settings
from .ini import FileSpec, managed, render_ini
from .profile import OpenStackProfile


@dataclass(frozen=True)
class UwsgiApp:
    """A WSGI API served by uWSGI under the distribution's init wrapper."""

    name: str
    wsgi_file: str
    log: str
    chdir: str
    port: int
    processes: int
    threads: int
    upload: bool = False
    #: Lines the application needs beyond the common ones (neutron-api's paste pipeline).
    extra: tuple[tuple[str, object], ...] = ()
    #: The name the init wrapper reads ``/etc/default/NAME`` under, when not the package's.
    default_name: str = ""
    #: The application talks to RabbitMQ (oslo.messaging RPC): see :data:`RPC_HEARTBEAT_ENV`.
    rpc: bool = False


#: oslo.messaging sends RabbitMQ heartbeats from a green thread that only runs while the
#: eventlet-patched process yields; a uWSGI worker idles in native code between requests, so
#: RabbitMQ dropped nova-api's and neutron-api's connections ("missed heartbeats from client,
#: timeout: 60s" in its log) and an RPC call answered on a dropped reply queue ended in a
#: MessagingTimeout (seen as `openstack console url show` failing after 60 s). oslo.messaging's
#: documented remedy for WSGI services is ``[oslo_messaging_rabbit] heartbeat_in_pthread``; it is
#: set for the uWSGI apps only (as oslo.config's environment source), never for the daemons that
#: share their configuration files.
RPC_HEARTBEAT_ENV = "OS_OSLO_MESSAGING_RABBIT__HEARTBEAT_IN_PTHREAD=true"


def uwsgi_apps(settings: Settings) -> dict[str, UwsgiApp]:
    """The uWSGI-served APIs by package name: Keystone, cinder-api, placement-api, nova-api, neutron-api."""
    o = settings.openstack
    return {
        "keystone": UwsgiApp("keystone-api", "/usr/bin/keystone-wsgi-public", "/var/log/keystone/keystone.log",
                             "/var/lib/keystone", o.keystone_port, o.keystone_processes, o.keystone_threads),
        "cinder-api": UwsgiApp("cinder-api", "/usr/bin/cinder-wsgi", "/var/log/cinder/cinder-api.log",
                               "/var/lib/cinder", o.cinder_port, o.cinder_api_processes, o.cinder_api_threads, upload=True, rpc=True),
        "placement-api": UwsgiApp("placement-api", "/usr/bin/placement-api", "/var/log/placement/placement-api.log",
                                  "/var/lib/placement", o.placement_port, o.placement_processes, o.placement_threads),
        "nova-api": UwsgiApp("nova-api", "/usr/bin/nova-api-wsgi", "/var/log/nova/nova-api.log",
                             "/var/lib/nova", o.nova_port, o.nova_api_processes, o.nova_api_threads, rpc=True),
        "neutron-api": UwsgiApp("neutron-api", "/usr/bin/neutron-api", "/var/log/neutron/neutron-api.log",
                                "/var/lib/neutron", o.neutron_port, o.neutron_api_workers, 4,
                                extra=(("paste", "config:/etc/neutron/api-paste.ini"),), default_name="neutron-server", rpc=True),
    }


def render_uwsgi_ini(app: UwsgiApp) -> str:
    """A uWSGI ini: the python3 plugin only (the AppArmor plugin fails in containers), few processes."""
    items: list[tuple[str, object]] = [
        ("plugins", "python3"),
        ("http-socket", f"0.0.0.0:{app.port}"),
        ("wsgi-file", app.wsgi_file),
        ("name", app.name),
        ("master", True),
        ("processes", app.processes),
        ("threads", app.threads),
        ("enable-threads", True),
        ("lazy-apps", True),
        ("thunder-lock", True),
        ("listen", 100),
        ("buffer-size", 65535),
        ("die-on-term", True),
        ("no-orphans", True),
        ("paste-logger", True),
        ("logto", app.log),
        ("chdir", app.chdir),
        ("worker-reload-mercy", 10),
        ("reload-mercy", 10),
    ]
    # uWSGI's http-socket does not keep connections alive: say so, or clients that reuse a
    # connection get "connection reset by peer" (seen with the openstack CLI).
    items.append(("add-header", "Connection: close"))
    if app.rpc:
        items.append(("env", RPC_HEARTBEAT_ENV))
    if app.upload:
        items += [("http-raw-body", True), ("socket-timeout", 10), ("wsgi-manage-chunked-input", True)]
    items += list(app.extra)
    return render_ini(managed(";"), [("uwsgi", items)])


def uwsgi_ini_path(package: str) -> str:
    """Where our uWSGI ini for ``package`` lives (next to the package's own, which is left alone)."""
    project = package.split("-")[0]
    return f"/etc/{project}/{package}-coa-uwsgi.ini"


def render_default_file(package: str) -> str:
    """/etc/default/NAME: the init wrapper reads it last; it points uWSGI at our ini only."""
    return (
        managed() +
        "# The init wrapper sources this file last: these arguments replace the packaged ones\n"
        "# (8 processes x 32 threads, the AppArmor plugin).\n"
        f'DAEMON_ARGS="--ini {uwsgi_ini_path(package)}"\n'
    )


def uwsgi_files(settings: Settings, prof: OpenStackProfile) -> list[FileSpec]:
    """The ini and /etc/default file of each uWSGI-served package of the profile."""
    apps = uwsgi_apps(settings)
    files = []
    for package in prof.uwsgi_packages:
        unit = f"{package}.service"
        files.append(FileSpec(uwsgi_ini_path(package), render_uwsgi_ini(apps[package]), 0o644, "root", "root", (unit,)))
        default = apps[package].default_name or package
        files.append(FileSpec(f"/etc/default/{default}", render_default_file(package), 0o644, "root", "root", (unit,)))
    return files
