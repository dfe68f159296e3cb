"""Apache in front of every public port: the TLS directives each HTTPS virtual host shares, and
one TLS reverse proxy per public API and for noVNC, each to its service on 127.0.0.1.

The public ports follow TripleO's convention (``tls.keystone_port`` 13000, ...). Each proxy
keeps the client's ``Host`` and says ``X-Forwarded-Proto: https``; the services read that with
``[oslo_middleware] enable_proxy_headers_parsing`` (:data:`provision.openstack.ini.PROXY_HEADERS_SECTION`), so the
version documents and links they return name the public HTTPS URL. Internal and admin
endpoints stay plain HTTP on the private address (traffic inside the instance or the VPC).

noVNC's page opens its WebSocket at ``/?token=...`` on the same port as the page, so the proxy
tells the two apart by the ``Upgrade`` header (``ProxyPass ... upgrade=websocket``, mod_proxy_http
since Apache 2.4.47), not by a path.

Pure renderers (settings in, text out) and the module list the dashboard step enables.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import tls
from ..settings import Settings
from .identity import SERVICES
from .ini import FileSpec, managed
from .profile import OpenStackProfile

PROXY_SITE = "/etc/apache2/sites-available/coa-tls-proxies.conf"
#: Apache modules the dashboard and the proxies use (``a2enmod`` pulls in their dependencies).
MODULES = ("ssl", "headers", "proxy", "proxy_http", "rewrite")
#: Ports Debian's /etc/apache2/ports.conf listens on already (443 with mod_ssl).
PORTS_CONF = (80, 443)
#: Mozilla's "intermediate" TLS 1.2 suites (TLS 1.3 suites are OpenSSL's defaults).
CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
           "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")
#: Access log lines without the query string or the referrer: noVNC's console token rides in both.
LOG_FORMAT = '"%h %l %u %t \\"%m %U %H\\" %>s %O \\"%{User-Agent}i\\""'


@dataclass(frozen=True)
class Proxy:
    """One TLS reverse proxy: its name, the public port, the service's port on 127.0.0.1."""

    name: str
    public_port: int
    backend_port: int
    websocket: bool = False


def proxies(settings: Settings) -> list[Proxy]:
    """The public APIs of the catalog and noVNC, each on its public TLS port."""
    o, t = settings.openstack, settings.tls
    out = [Proxy(s.name, getattr(t, s.port_setting), getattr(o, s.port_setting)) for s in SERVICES]
    out.append(Proxy("novnc", t.novnc_port, o.novnc_port, websocket=True))
    return out


def listen_lines(*ports: int) -> str:
    """``Listen PORT`` lines for the ports Debian's ports.conf does not open."""
    return "".join(f"Listen {p}\n" for p in ports if p not in PORTS_CONF)


def ssl_lines(settings: Settings, indent: str = "    ") -> str:
    """The TLS directives of every HTTPS virtual host: our certificate, TLS 1.2 and 1.3 only."""
    files = tls.cert_files(settings)
    lines = [
        "SSLEngine on",
        f'SSLCertificateFile "{files.cert}"',
        f'SSLCertificateKeyFile "{files.key}"',
        "SSLProtocol -all +TLSv1.2 +TLSv1.3",
        f"SSLCipherSuite {CIPHERS}",
        "SSLHonorCipherOrder off",
        "SSLSessionTickets off",
    ]
    return "".join(f"{indent}{line}\n" for line in lines)


def log_lines(name: str, indent: str = "    ") -> str:
    """ErrorLog and CustomLog of a virtual host (no query strings: see :data:`LOG_FORMAT`)."""
    return (f"{indent}ErrorLog /var/log/apache2/coa-{name}-error.log\n"
            f"{indent}CustomLog /var/log/apache2/coa-{name}-access.log {LOG_FORMAT}\n")


def render_proxy_vhost(settings: Settings, proxy: Proxy) -> str:
    """One HTTPS virtual host that hands every request to ``http://127.0.0.1:BACKEND/``."""
    backend = f"http://127.0.0.1:{proxy.backend_port}/"
    upgrade = " upgrade=websocket" if proxy.websocket else ""
    return (
        listen_lines(proxy.public_port)
        + f"<VirtualHost *:{proxy.public_port}>\n"
        + ssl_lines(settings)
        + "    ProxyRequests Off\n"
        "    ProxyPreserveHost On\n"
        # The services enforce their own limits (Apache's default stops bodies at 1 GiB: images).
        "    LimitRequestBody 0\n"
        "    AllowEncodedSlashes NoDecode\n"
        '    RequestHeader set X-Forwarded-Proto "https"\n'
        # A new loopback connection per request: uWSGI closes each one after its answer
        # ("Connection: close"), and a reused connection the service just closed would be a 502.
        f"    ProxyPass / {backend} nocanon disablereuse=On{upgrade}\n"
        f"    ProxyPassReverse / {backend}\n"
        + log_lines(f"tls-{proxy.name}")
        + "</VirtualHost>\n"
    )


def render_proxy_site(settings: Settings) -> str:
    """The Apache site of every TLS reverse proxy."""
    return managed() + "".join(render_proxy_vhost(settings, p) for p in proxies(settings))


def proxy_files(settings: Settings, prof: OpenStackProfile) -> list[FileSpec]:
    """The proxies' site (no secrets: the key stays in its own file)."""
    return [FileSpec(PROXY_SITE, render_proxy_site(settings), 0o644, "root", "root", (prof.dashboard_unit,))]
