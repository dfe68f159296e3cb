"""Horizon, the dashboard: its settings without a secret, its per-instance overrides (its own
key, this instance's names), the Apache site that serves it at ``/``, and the step that
enables it and waits for its login page. Also the console line that tells the owner
where to log in.
"""

from __future__ import annotations

from ..settings import Settings
from ..steps import outcome
from ..systemd import ensure_running, restart_if_active, wait_for
from ..target import Target
from .addresses import Addresses
from .ini import DOMAIN, HEADER, WRITER, FileSpec, managed
from .profile import OpenStackProfile
from .secrets import Secrets

DASHBOARD_SETTINGS = "/etc/openstack-dashboard/local_settings.py"
DASHBOARD_OVERRIDES = "/etc/openstack-dashboard/local_settings.d/_90_ceph_openstack_ami.py"
DASHBOARD_SITE = "/etc/apache2/sites-available/coa-dashboard.conf"
#: Marks the static files compressed for the dashboard at ``/`` (the package's are for /horizon).
COMPRESS_STAMP = "/var/lib/openstack-dashboard/static/.ceph-openstack-ami-compressed"
COMPRESS_STAMP_TEXT = "WEBROOT=/"


def render_dashboard_settings() -> str:
    """local_settings.py without a secret (the package's would make and keep a key file in the image)."""
    return (
        f"# Managed by ceph-openstack-ami ({WRITER}). No secret here: the per-instance\n"
        "# values (SECRET_KEY, ALLOWED_HOSTS) are in local_settings.d/_90_ceph_openstack_ami.py.\n"
        "from openstack_dashboard.settings import HORIZON_CONFIG  # noqa: F401\n"
        "DEBUG = False\n"
        "TIME_ZONE = 'UTC'\n"
        "EMAIL_BACKEND = 'django.core.mail.backends.console.EmailBackend'\n"
    )


def _py(value: object) -> str:
    """A Python literal of ``value`` (str, bool, int, list/tuple of those)."""
    return repr(value)


def render_dashboard_overrides(settings: Settings, sec: Secrets, addrs: Addresses) -> str:
    """The dashboard's per-instance settings: served at ``/``, this instance's names only, its own key."""
    o = settings.openstack
    hosts = sorted({addrs.public_host, addrs.private_ip, "localhost", "127.0.0.1"})
    lines = [
        HEADER.rstrip("\n"),
        "# Read after Debian's local_settings.d files (they put the dashboard at /horizon).",
        "WEBROOT = '/'",
        "LOGIN_URL = '/auth/login/'",
        "LOGOUT_URL = '/auth/logout/'",
        "LOGIN_REDIRECT_URL = '/'",
        "STATIC_URL = '/static/'",
        f"ALLOWED_HOSTS = {_py(hosts)}",
        f"SECRET_KEY = {_py(sec.dashboard_key)}",
        "SESSION_ENGINE = 'django.contrib.sessions.backends.signed_cookies'",
        "OPENSTACK_HOST = '127.0.0.1'",
        f"OPENSTACK_KEYSTONE_URL = {_py(f'http://127.0.0.1:{o.keystone_port}/v3')}",
        "OPENSTACK_KEYSTONE_DEFAULT_ROLE = 'member'",
        f"OPENSTACK_KEYSTONE_DEFAULT_DOMAIN = {_py(DOMAIN)}",
        "OPENSTACK_KEYSTONE_MULTIDOMAIN_SUPPORT = False",
        "OPENSTACK_ENDPOINT_TYPE = 'internalURL'",
        "OPENSTACK_NEUTRON_NETWORK = {'enable_router': False, 'enable_quotas': False, 'enable_distributed_router': False, 'enable_ha_router': False, 'enable_fip_topology_check': False}",
        "CONSOLE_TYPE = 'AUTO'",
        "",
    ]
    return "\n".join(lines)


def render_dashboard_site(settings: Settings) -> str:
    """Apache: the dashboard at ``/`` on the dashboard port, one small mod_wsgi daemon."""
    o = settings.openstack
    listen = "" if o.dashboard_port == 80 else f"Listen {o.dashboard_port}\n"
    return (
        managed() +
        f"{listen}"
        f"<VirtualHost *:{o.dashboard_port}>\n"
        "    WSGIScriptAlias / /usr/share/openstack-dashboard/wsgi.py\n"
        f"    WSGIDaemonProcess horizon user=www-data group=www-data processes={o.dashboard_processes} threads={o.dashboard_threads} display-name=%{{GROUP}}\n"
        "    WSGIProcessGroup horizon\n"
        "    WSGIApplicationGroup %{GLOBAL}\n"
        "    Alias /static /var/lib/openstack-dashboard/static\n"
        "    <Directory /usr/share/openstack-dashboard>\n"
        "        Require all granted\n"
        "    </Directory>\n"
        "    <Directory /var/lib/openstack-dashboard/static>\n"
        "        Require all granted\n"
        "    </Directory>\n"
        "    ErrorLog /var/log/apache2/coa-dashboard-error.log\n"
        "    CustomLog /var/log/apache2/coa-dashboard-access.log combined\n"
        "</VirtualHost>\n"
    )


def overrides_files(settings: Settings, prof: OpenStackProfile, sec: Secrets, addrs: Addresses) -> list[FileSpec]:
    """The per-instance overrides (0640 root:www-data: they hold the dashboard's key)."""
    return [FileSpec(DASHBOARD_OVERRIDES, render_dashboard_overrides(settings, sec, addrs), 0o640, "root", "www-data", (prof.dashboard_unit,))]


def site_files(settings: Settings, prof: OpenStackProfile) -> list[FileSpec]:
    """local_settings.py and the Apache site (no secrets)."""
    return [
        FileSpec(DASHBOARD_SETTINGS, render_dashboard_settings(), 0o644, "root", "root", (prof.dashboard_unit,)),
        FileSpec(DASHBOARD_SITE, render_dashboard_site(settings), 0o644, "root", "root", (prof.dashboard_unit,)),
    ]


def dashboard_url(addrs: Addresses) -> str:
    """The URL the owner is told about on the console."""
    return f"http://{addrs.public_host}/"


def console_line(addrs: Addresses, admin_password: str) -> str:
    """The one line printed to the console log on a new instance (the only place a secret is shown)."""
    return f"ceph-openstack-ami: admin password for {dashboard_url(addrs)}: {admin_password}"


#: Apache sites of the packages that the dashboard site replaces (the default page, TLS with a
#: snakeoil certificate, the dashboard under /horizon).
PACKAGE_SITES = ("000-default", "default-ssl", "openstack-dashboard-alias-only", "openstack-dashboard", "openstack-dashboard-ssl", "openstack-dashboard-ssl-redirect")


def dashboard_login_url(settings: Settings) -> str:
    """The dashboard's login page, on the instance itself."""
    return f"http://127.0.0.1:{settings.openstack.dashboard_port}/auth/login/"


def dashboard_status(target: Target, settings: Settings) -> str:
    """The HTTP status of the dashboard's login page ("000" or "" when nothing answers)."""
    probe = "curl -s -o /dev/null -w '%%{http_code}' --max-time 20 %s"
    return target.run(probe, dashboard_login_url(settings), check=False).stdout.strip()


def dashboard_step(target: Target, settings: Settings, prof: OpenStackProfile) -> tuple[bool, str]:
    """The dashboard at ``/`` (Apache, our site only) running; its login page answers."""
    did = []
    enabled = target.run("ls /etc/apache2/sites-enabled/ 2>/dev/null", check=False).stdout.split()
    drop = [site for site in PACKAGE_SITES if f"{site}.conf" in enabled]
    if drop:
        target.run(["a2dissite", "-q", *drop])
        did.append("disabled sites " + " ".join(drop))
    if "coa-dashboard.conf" not in enabled:
        target.run(["a2ensite", "-q", "coa-dashboard"])
        did.append("enabled site coa-dashboard")
    # The package compressed its pages for /horizon; at / their keys differ: compress again (once).
    if target.run(["grep", "-qx", COMPRESS_STAMP_TEXT, COMPRESS_STAMP], check=False).exit_code != 0:
        target.run("cd /usr/share/openstack-dashboard && timeout -k 5 600 python3 manage.py compress --force >/dev/null 2>&1")
        target.put(COMPRESS_STAMP, COMPRESS_STAMP_TEXT + "\n", 0o644)
        did.append("compressed the dashboard's static files for /")
    if did:
        restart_if_active(target, [prof.dashboard_unit])
    did += ensure_running(target, [prof.dashboard_unit])
    url = dashboard_login_url(settings)
    wait_for(f"the dashboard to answer at {url}", lambda: dashboard_status(target, settings) == "200", 180, 2.0)
    return outcome(did, f"dashboard answers at {url}")
