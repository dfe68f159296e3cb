"""Horizon, the dashboard: its settings without a secret, its per-instance overrides (its own
key, this instance's names, cookies for HTTPS only), the Apache site that serves it at ``/``
over TLS (plain HTTP only redirects there), and the step that enables it with the TLS
proxies (:mod:`.proxy`) and waits for its login page. Also the console line that tells the
owner where to log in, with the password and the certificate's fingerprint.
"""

from __future__ import annotations

import posixpath
import re

from .. import tls
from ..exceptions import ProvisionError
from ..settings import Settings
from ..steps import outcome
from ..systemd import ensure_running, restart_if_active, wait_for
from ..target import Target
from .addresses import Addresses, provisioning_addresses
from .ini import DOMAIN, HEADER, WRITER, FileSpec, managed
from .profile import OpenStackProfile
from .proxy import MODULES, PROXY_SITE, listen_lines, log_lines, ssl_lines
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
        "# Served over HTTPS only (port 80 redirects): the cookies never travel in clear.",
        "SESSION_COOKIE_SECURE = True",
        "CSRF_COOKIE_SECURE = True",
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
    """Apache: the dashboard at ``/`` over TLS, one small mod_wsgi daemon; plain HTTP only redirects to it.

    The redirect keeps the host name the browser asked for (``SERVER_NAME`` is the request's
    ``Host`` without its port) and the path.
    """
    o, t = settings.openstack, settings.tls
    port = "" if t.dashboard_port == 443 else f":{t.dashboard_port}"
    return (
        managed() +
        listen_lines(t.redirect_port, t.dashboard_port) +
        f"<VirtualHost *:{t.redirect_port}>\n"
        "    RewriteEngine On\n"
        f"    RewriteRule ^ https://%{{SERVER_NAME}}{port}%{{REQUEST_URI}} [R=301,L]\n"
        + log_lines("dashboard-redirect") +
        "</VirtualHost>\n"
        f"<VirtualHost *:{t.dashboard_port}>\n"
        + ssl_lines(settings) +
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
        + log_lines("dashboard") +
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


def dashboard_url(settings: Settings, addrs: Addresses) -> str:
    """The URL the owner is told about on the console."""
    return tls.https_url(addrs.public_host, settings.tls.dashboard_port)


def console_line(settings: Settings, addrs: Addresses, admin_password: str, fingerprint: str | None) -> str:
    """The one line printed to the console log on a new instance (the only place a secret is shown).

    The certificate's fingerprint is on it: the owner checks the browser's certificate against
    it before typing the password there.
    """
    return f"ceph-openstack-ami: admin password for {dashboard_url(settings, addrs)} ({tls.fingerprint_label(fingerprint)}): {admin_password}"


#: A line of :func:`console_line`; what follows its last ``: `` is the password.
CONSOLE_PASSWORD_LINE = re.compile(r"ceph-openstack-ami: admin password for \S+ \(.*\): (\S+)\s*$", re.M)


def admin_password_on(console: str) -> str | None:
    """The admin password on a console (the last line of :func:`console_line`: the latest boot is last), or None."""
    found = CONSOLE_PASSWORD_LINE.findall(console)
    return str(found[-1]) if found else None


#: Apache sites of the packages that the dashboard site replaces (the default page, TLS with a
#: snakeoil certificate, the dashboard under /horizon).
PACKAGE_SITES = ("000-default", "default-ssl", "openstack-dashboard-alias-only", "openstack-dashboard", "openstack-dashboard-ssl", "openstack-dashboard-ssl-redirect")


def dashboard_login_url(settings: Settings, host: str = "127.0.0.1") -> str:
    """The dashboard's login page at ``host`` (fetched on the instance itself)."""
    return tls.https_url(host, settings.tls.dashboard_port, "/auth/login/")


def dashboard_probe_argv(settings: Settings, public_host: str | None) -> list[str]:
    """curl printing the HTTP status of the login page over TLS on this instance.

    With our own certificate and a known public name, the certificate is verified for that
    name (``--resolve`` sends it to 127.0.0.1): the check fails when the certificate did not
    follow a new name. The owner's certificate may name other hosts: it is not verified.
    """
    port = settings.tls.dashboard_port
    files = tls.cert_files(settings)
    base = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20", "--proto", "=https"]
    if files.own and public_host:
        return [*base, "--cacert", files.cert, "--resolve", f"{public_host}:{port}:127.0.0.1", dashboard_login_url(settings, public_host)]
    return [*base, "-k", dashboard_login_url(settings)]


def redirect_probe_argv(settings: Settings) -> list[str]:
    """curl printing ``STATUS LOCATION`` of the plain-HTTP port (never following the redirect)."""
    return ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "--max-time", "10",
            f"http://127.0.0.1:{settings.tls.redirect_port}/auth/login/"]


def redirect_ok(settings: Settings, probe_output: str) -> bool:
    """True when the plain-HTTP port answered 301 to the same host's HTTPS URL (the path kept)."""
    code, _, location = probe_output.strip().partition(" ")
    return code == "301" and location == dashboard_login_url(settings)


def dashboard_status(target: Target, settings: Settings, public_host: str | None = None) -> str:
    """The HTTP status of the dashboard's login page over TLS ("000" or "" when nothing answers)."""
    return target.run(dashboard_probe_argv(settings, public_host), check=False).stdout.strip()


def redirect_status(target: Target, settings: Settings) -> str:
    """What the plain-HTTP port answers: ``STATUS LOCATION`` (see :func:`redirect_ok`)."""
    return target.run(redirect_probe_argv(settings), check=False).stdout.strip()


def enable_modules(target: Target) -> list[str]:
    """``a2enmod`` the modules of :data:`MODULES` that are not enabled yet; what was done."""
    enabled = target.run("ls /etc/apache2/mods-enabled/ 2>/dev/null", check=False).stdout.split()
    missing = [m for m in MODULES if f"{m}.load" not in enabled]
    if not missing:
        return []
    target.run(["a2enmod", "-q", *missing])
    return ["enabled modules " + " ".join(missing)]


def dashboard_step(target: Target, settings: Settings, prof: OpenStackProfile, ip: str) -> tuple[bool, str]:
    """The dashboard at ``/`` over TLS and the TLS proxies (Apache, our sites only) running; the login page answers."""
    did = enable_modules(target)
    enabled = target.run("ls /etc/apache2/sites-enabled/ 2>/dev/null", check=False).stdout.split()
    drop = [site for site in PACKAGE_SITES if f"{site}.conf" in enabled]
    if drop:
        target.run(["a2dissite", "-q", *drop])
        did.append("disabled sites " + " ".join(drop))
    for site in ("coa-dashboard", posixpath.splitext(posixpath.basename(PROXY_SITE))[0]):
        if f"{site}.conf" not in enabled:
            target.run(["a2ensite", "-q", site])
            did.append(f"enabled site {site}")
    # The package compressed its pages for /horizon; at / their keys differ: compress again (once).
    if target.run(["grep", "-qx", COMPRESS_STAMP_TEXT, COMPRESS_STAMP], check=False).exit_code != 0:
        target.run("cd /usr/share/openstack-dashboard && timeout -k 5 600 python3 manage.py compress --force >/dev/null 2>&1")
        target.put(COMPRESS_STAMP, COMPRESS_STAMP_TEXT + "\n", 0o644)
        did.append("compressed the dashboard's static files for /")
    if did:
        restart_if_active(target, [prof.dashboard_unit])
    did += ensure_running(target, [prof.dashboard_unit])
    public = provisioning_addresses(target, settings, ip).public_host
    url = dashboard_login_url(settings, public)
    wait_for(f"the dashboard to answer at {url}", lambda: dashboard_status(target, settings, public) == "200", 180, 2.0)
    if not redirect_ok(settings, redirect_status(target, settings)):
        raise ProvisionError(f"Port {settings.tls.redirect_port} does not redirect to {dashboard_login_url(settings)}",
                             hint="see /var/log/apache2/coa-dashboard-redirect-error.log")
    return outcome(did, f"dashboard answers at {url}; port {settings.tls.redirect_port} redirects to HTTPS")
