"""Our Apache sites served by the real Apache of this machine (Debian's ``apache2-bin`` and
``libapache2-mod-wsgi-py3``; skipped without them), with a certificate made by ``provision.tls``
and a small HTTP server standing in for every OpenStack service on 127.0.0.1.

Only the log directory of the rendered sites is moved into the test's temporary directory;
every other line is Apache's to judge (``apache2 -t``) and to serve.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from provision import tls
from provision.instance import InstanceInfo
from provision.openstack.dashboard import render_dashboard_site
from provision.openstack.proxy import MODULES, render_proxy_site
from provision.settings import Settings
from provision.target.local import LocalTarget

APACHE = "/usr/sbin/apache2"
MODULE_DIR = "/usr/lib/apache2/modules"
PUBLIC = "ec2-203-0-113-7.compute-1.amazonaws.com"

pytestmark = pytest.mark.skipif(
    not (os.path.exists(APACHE) and os.path.exists(f"{MODULE_DIR}/mod_wsgi.so") and shutil.which("openssl")),
    reason="needs Apache (apt-get install apache2-bin libapache2-mod-wsgi-py3) and openssl",
)


class Backend(BaseHTTPRequestHandler):
    """Every OpenStack service: answers what it was sent (Host, X-Forwarded-Proto, path); a WebSocket upgrade gets 101."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.headers.get("Upgrade", "").lower() == "websocket":
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.write(b"hello from the console")
            self.wfile.flush()
            self.close_connection = True
            return
        body = json.dumps({"host": self.headers.get("Host"), "proto": self.headers.get("X-Forwarded-Proto"), "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def apache_conf(root: Path, sites: Path) -> str:
    modules = ["mpm_event", "authz_core", "alias", "wsgi", *MODULES]
    loads = "".join(f"LoadModule {m}_module {MODULE_DIR}/mod_{m}.so\n" for m in modules)
    return (
        f"ServerRoot {root}\nPidFile {root}/httpd.pid\nMutex file:{root} default\nErrorLog {root}/error.log\n"
        f"LogLevel warn\nServerName localhost\nUser www-data\nGroup www-data\n{loads}"
        f"WSGISocketPrefix {root}/wsgi\nInclude {sites}/*.conf\n"
    )


@pytest.fixture(scope="module")
def apache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("apache")
    backend = ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    bport = backend.server_address[1]
    public = {k: free_port() for k in ("dashboard_port", "redirect_port", "keystone_port", "glance_port", "cinder_port",
                                        "nova_port", "placement_port", "neutron_port", "novnc_port")}
    internal = {k: bport for k in ("keystone_port", "glance_port", "cinder_port", "nova_port", "placement_port", "neutron_port", "novnc_port")}
    s = Settings().replace(state_dir=str(root / "state"), tls=public, openstack=internal)
    (root / "machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    inst = InstanceInfo("i-0000000000000000a", "ami-0", "m1.xlarge", "127.0.0.1", "ip-127-0-0-1", "us-east-1a", "us-east-1", public_hostname=PUBLIC)
    tls.ensure(LocalTarget(), s, inst, print, print, machine_id_path=str(root / "machine-id"))
    sites = root / "sites"
    (root / "logs").mkdir()
    sites.mkdir()
    for name, text in (("coa-dashboard", render_dashboard_site(s)), ("coa-tls-proxies", render_proxy_site(s))):
        (sites / f"{name}.conf").write_text(text.replace("/var/log/apache2/", f"{root}/logs/"))
    conf = root / "httpd.conf"
    conf.write_text(apache_conf(root, sites))
    check = subprocess.run([APACHE, "-f", str(conf), "-t"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([APACHE, "-f", str(conf), "-DFOREGROUND"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not all(_open(p) for p in public.values()):
            assert proc.poll() is None and time.monotonic() < deadline, (root / "error.log").read_text() if (root / "error.log").exists() else ""
            time.sleep(0.1)
        yield {"settings": s, "ports": public, "cert": tls.cert_files(s).cert, "syntax": check.stderr, "root": root}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        backend.shutdown()


def _open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def https(apache: dict[str, Any], port: int, request: bytes, name: str = PUBLIC) -> tuple[bytes, bytes]:
    """Send ``request`` over TLS to 127.0.0.1:PORT, verifying our certificate for ``name``; (response, peer DER)."""
    ctx = ssl.create_default_context(cafile=apache["cert"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, ctx.wrap_socket(raw, server_hostname=name) as s:
        assert s.version() in ("TLSv1.2", "TLSv1.3")
        der = s.getpeercert(True) or b""
        s.sendall(request)
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except ssl.SSLError:  # a tunnel closed without TLS close_notify: what came before counts
            pass
        return data, der


def get(path: str, host: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()


def test_apache_accepts_the_sites(apache: dict[str, Any]) -> None:
    assert "Syntax OK" in apache["syntax"]


def test_plain_http_redirects_to_https_on_the_same_host_and_path(apache: dict[str, Any]) -> None:
    p = apache["ports"]
    for host, want in (("127.0.0.1", "127.0.0.1"), (f"{PUBLIC}:{p['redirect_port']}", PUBLIC)):
        conn = http.client.HTTPConnection("127.0.0.1", p["redirect_port"], timeout=10)
        conn.request("GET", "/auth/login/?next=/project/", headers={"Host": host})
        r = conn.getresponse()
        assert r.status == 301
        assert r.getheader("Location") == f"https://{want}:{p['dashboard_port']}/auth/login/?next=/project/"
        conn.close()


def test_the_dashboard_port_serves_our_certificate_for_the_public_name(apache: dict[str, Any]) -> None:
    response, der = https(apache, apache["ports"]["dashboard_port"], get("/auth/login/", PUBLIC))
    assert response.startswith(b"HTTP/1.1 ")  # mod_wsgi answers (no Horizon here: the status does not matter)
    fp = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    assert fp == tls.served_fingerprint(LocalTarget(), apache["settings"])
    with pytest.raises(ssl.SSLCertVerificationError):
        https(apache, apache["ports"]["dashboard_port"], get("/", "other.example"), name="other.example")


def test_api_proxies_keep_the_host_and_say_https(apache: dict[str, Any]) -> None:
    for key in ("keystone_port", "glance_port", "cinder_port", "nova_port", "placement_port", "neutron_port"):
        port = apache["ports"][key]
        response, _ = https(apache, port, get("/v3/projects/a%2Fb?name=x", f"{PUBLIC}:{port}"))
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        seen = json.loads(body)
        assert seen == {"host": f"{PUBLIC}:{port}", "proto": "https", "path": "/v3/projects/a%2Fb?name=x"}, key


def test_novnc_proxy_serves_the_page_and_passes_the_websocket_upgrade(apache: dict[str, Any]) -> None:
    port = apache["ports"]["novnc_port"]
    page, _ = https(apache, port, get("/vnc_auto.html?path=%3Ftoken%3Dsecret", f"{PUBLIC}:{port}"))
    assert page.startswith(b"HTTP/1.1 200")
    upgrade = (f"GET /?token=secret HTTP/1.1\r\nHost: {PUBLIC}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Origin: https://{PUBLIC}:{port}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode()
    response, _ = https(apache, port, upgrade)
    assert response.startswith(b"HTTP/1.1 101"), response[:200]
    assert response.endswith(b"hello from the console")
    log = (apache["root"] / "logs" / "coa-tls-novnc-access.log").read_text()
    assert "GET /vnc_auto.html HTTP/1.1" in log and "secret" not in log  # the console token is not logged
