"""The APIs served by uWSGI under the distribution's init wrapper (Keystone, cinder-api,
placement-api, nova-api, neutron-api): our small ini for each, and the /etc/default file
that points the wrapper at it.

Pure renderers (settings in, text out) and the file list provisioning writes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..exceptions import ConfigError
from ..paths import AGENT_DIR
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
    #: The application monkey-patches the standard library with eventlet when it loads
    #: (nova-api, neutron-api). The others are not patched, and are given :data:`UWSGI_PRELOAD`.
    eventlet_patched: bool = False

    def __post_init__(self) -> None:
        if self.eventlet_patched and self.threads != 1:
            raise ConfigError(f"{self.name} is eventlet-patched: it runs 1 thread per uWSGI process (asked for {self.threads})",
                              hint="use more processes instead (see RPC_HEARTBEAT_ENV in provision/openstack/uwsgi.py)")


#: An eventlet-patched app runs one thread per uWSGI worker: uWSGI's request threads are native
#: threads, each with its own eventlet hub, and a green lock or queue shared between them wakes
#: its waiter from the wrong thread ("greenlet.error: cannot switch to a different thread" from
#: eventlet/queue.py in neutron-api's log with 4 threads), leaving that waiter parked for good.
#:
#: oslo.messaging sends RabbitMQ heartbeats from a green thread that only runs while the
#: eventlet-patched process yields; a uWSGI worker idles in native code between requests, so
#: RabbitMQ dropped nova-api's and neutron-api's connections ("missed heartbeats from client,
#: timeout: 60s" in its log) and an RPC call answered on a dropped reply queue ended in a
#: MessagingTimeout (seen as `openstack console url show` failing after 60 s). Sending them from
#: a native thread instead (``heartbeat_in_pthread``) puts that thread next to eventlet's green
#: locks in the same way (eventlet issue 662; oslo.messaging deprecated the option), so the
#: patched apps ask for no AMQP heartbeat at all (``heartbeat_timeout_threshold = 0``: py-amqp
#: answers the broker's tune with 0, RabbitMQ then never closes the connection for missed
#: heartbeats, and oslo.messaging starts no heartbeat thread). Set for those uWSGI apps only (as
#: oslo.config's environment source), never for the daemons that share their configuration
#: files. cinder-api is not patched: its heartbeat thread is a native thread and runs anyway.
RPC_HEARTBEAT_ENV = "OS_OSLO_MESSAGING_RABBIT__HEARTBEAT_TIMEOUT_THRESHOLD=0"

#: A file uWSGI imports (``import =``) in each worker before the application of every app that is
#: not eventlet-patched. oslo.log before 6.0 (Debian 12 has 5.0.1) makes ``logging._lock`` an
#: eventlet green RLock at ``log.setup()`` whenever eventlet is merely imported, patched or not
#: (``_fix_eventlet_logging``; cinder's package imports eventlet and never patches it in its WSGI
#: app). That lock parks a waiter in the hub of its own OS thread and wakes it from the hub of the
#: thread that releases; with several native threads in one worker (uWSGI's request threads,
#: oslo.messaging's heartbeat and reply threads, tooz's heart) the wake-up fails with
#: "greenlet.error: cannot switch to a different thread" and leaves the lock free with its
#: waiters queued, so every later ``logging.getLogger()`` or first level check in any thread
#: blocks for good: cinder-api stayed ``active`` and never answered again. oslo.log 6.0.0 applies
#: the workaround only when ``thread`` is monkey-patched (upstream change a1fe1b9, Launchpad bug
#: 2039346); this file gives the installed oslo.log that behaviour (a no-op where it has it).
UWSGI_PRELOAD = f"{AGENT_DIR}/uwsgi_preload.py"


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
                             "/var/lib/nova", o.nova_port, o.nova_api_processes, o.nova_api_threads, rpc=True, eventlet_patched=True),
        "neutron-api": UwsgiApp("neutron-api", "/usr/bin/neutron-api", "/var/log/neutron/neutron-api.log",
                                "/var/lib/neutron", o.neutron_port, o.neutron_api_workers, 1,
                                extra=(("paste", "config:/etc/neutron/api-paste.ini"),), default_name="neutron-server", rpc=True,
                                eventlet_patched=True),
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
    if app.rpc and app.eventlet_patched:
        items.append(("env", RPC_HEARTBEAT_ENV))
    if not app.eventlet_patched:
        items.append(("import", UWSGI_PRELOAD))
    if app.upload:
        items += [("http-raw-body", True), ("socket-timeout", 10), ("wsgi-manage-chunked-input", True)]
    items += list(app.extra)
    return render_ini(managed(";"), [("uwsgi", items)])


def render_uwsgi_preload() -> str:
    """:data:`UWSGI_PRELOAD`: oslo.log's eventlet logging workaround only in a monkey-patched process."""
    return '''"""Managed by ceph-openstack-ami (provision/openstack/uwsgi.py): imported by uWSGI before the app.

oslo.log < 6.0 swaps logging's module lock for an eventlet green lock whenever eventlet is
imported, even in a process that is not monkey-patched; with several native threads in a uWSGI
worker that lock deadlocks ("greenlet.error: cannot switch to a different thread"). As in
oslo.log 6.0.0 (change a1fe1b9, Launchpad bug 2039346), apply the workaround only when the
thread module is patched.
"""
import sys

from oslo_log import log as _log

_original = getattr(_log, "_fix_eventlet_logging", None)


def _fix_eventlet_logging_if_patched():
    patcher = sys.modules.get("eventlet.patcher")
    if patcher is not None and patcher.is_monkey_patched("thread"):
        _original()


if _original is not None:
    _log._fix_eventlet_logging = _fix_eventlet_logging_if_patched
'''


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
    preloaded = tuple(f"{p}.service" for p in prof.uwsgi_packages if not apps[p].eventlet_patched)
    if preloaded:
        files.append(FileSpec(UWSGI_PRELOAD, render_uwsgi_preload(), 0o644, "root", "root", preloaded))
    for package in prof.uwsgi_packages:
        unit = f"{package}.service"
        files.append(FileSpec(uwsgi_ini_path(package), render_uwsgi_ini(apps[package]), 0o644, "root", "root", (unit,)))
        default = apps[package].default_name or package
        files.append(FileSpec(f"/etc/default/{default}", render_default_file(package), 0o644, "root", "root", (unit,)))
    return files
