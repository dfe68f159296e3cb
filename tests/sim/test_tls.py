"""TLS on every public port of the simulated instance (issue 14), checked as the owner would.

From the host, with Python's own ``ssl``, trusting nothing but the certificate read from the
instance and checking it for the instance's public name: the dashboard, each API's TLS proxy and
noVNC serve the certificate whose SHA-256 fingerprint the console printed; plain HTTP only
redirects. Inside the instance, the public endpoints of the catalog are HTTPS and the CLI
verifies them (``--os-cacert``), and the services' version documents name their public HTTPS
URL (they read the proxy's headers). Needs the ``sim`` session fixture (tests/sim/conftest.py).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import socket
import ssl
import urllib.parse
from typing import Any

import pytest

from provision import tls
from provision.openstack.proxy import proxies
from tests.sim.test_openstack import cli, endpoints

pytestmark = pytest.mark.docker

#: A console line that names a certificate: the admin password's, or a later boot's new certificate.
CONSOLE_FP = re.compile(r"^ceph-openstack-ami: .*\(certificate SHA-256 ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})\)", re.M)


def console_fingerprints(sim: Any) -> list[str]:
    """The fingerprints on the console lines of this instance's boots, oldest first (never the password)."""
    return CONSOLE_FP.findall(sim.console())


def instance_certificate(sim: Any) -> str:
    """The PEM certificate the instance serves (ours: it made it)."""
    return sim.target.read(tls.cert_files(sim.settings).cert).decode()


def fingerprint(der: bytes) -> str:
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def tls_request(sim: Any, port: int, request: bytes | None = None) -> tuple[bytes, bytes]:
    """Connect from the host to the instance's private IP, verify its certificate for the public name,
    send ``request``; (what came back, the certificate served, DER)."""
    status = sim.status()
    ctx = ssl.create_default_context(cadata=instance_certificate(sim))
    with socket.create_connection((status["private_ip"], port), timeout=20) as raw, \
            ctx.wrap_socket(raw, server_hostname=status["public_hostname"]) as s:
        assert s.version() in ("TLSv1.2", "TLSv1.3")
        der = s.getpeercert(True) or b""
        data = b""
        if request is not None:
            s.sendall(request)
            try:
                while len(data) < 1 << 20 and (chunk := s.recv(65536)):
                    data += chunk
                    if request.startswith(b"GET /?token=") and b"\r\n\r\n" in data:
                        break  # the WebSocket's status line and headers are enough
            except (ssl.SSLError, TimeoutError):
                pass
        return data, der


def get(path: str, host: str, *headers: str) -> bytes:
    """A GET request; ``Connection: close`` unless ``headers`` say otherwise."""
    if not any(h.lower().startswith("connection:") for h in headers):
        headers = (*headers, "Connection: close")
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", *headers, "", ""]
    return "\r\n".join(lines).encode()


def test_the_dashboard_serves_the_certificate_on_the_console(sim: Any) -> None:
    """The latest console line naming a certificate names the one served (the admin password's line of
    a new instance is counted by test_security and test_relaunch; after a stop/start, as here when the
    modules run in order, the latest is the new certificate's own line)."""
    fps = console_fingerprints(sim)
    assert fps, "no console line names a certificate"
    _, der = tls_request(sim, sim.settings.tls.dashboard_port)
    assert fingerprint(der) == fps[-1]


def test_every_public_port_serves_it_for_the_public_name(sim: Any) -> None:
    want = tls.served_fingerprint(sim.target, sim.settings)
    ports = [sim.settings.tls.dashboard_port, *(p.public_port for p in proxies(sim.settings))]
    for port in ports:
        _, der = tls_request(sim, port)  # raises unless verified for the public name
        assert fingerprint(der) == want, port


def test_plain_http_only_redirects_to_https(sim: Any) -> None:
    status = sim.status()
    conn = http.client.HTTPConnection(status["private_ip"], sim.settings.tls.redirect_port, timeout=20)
    conn.request("GET", "/project/instances/", headers={"Host": status["public_hostname"]})
    r = conn.getresponse()
    assert r.status == 301 and r.getheader("Location") == f"https://{status['public_hostname']}/project/instances/"
    conn.close()


def test_the_key_is_root_only_and_made_for_this_instance(sim: Any) -> None:
    t, files = sim.target, tls.cert_files(sim.settings)
    key, cert = t.file_state(files.key), t.file_state(files.cert)
    assert key is not None and (key.mode, key.owner, key.group) == (0o600, "root", "root")
    assert t.run(["stat", "-c", "%a %U", files.key.rsplit("/", 1)[0]]).stdout.split() == ["700", "root"]
    assert cert is not None and cert.mode == 0o644
    assert f"instance-id={sim.status()['instance_id']} " in t.read(tls.identity_path(sim.settings)).decode()


def test_public_endpoints_are_https_and_the_cli_verifies_them(sim: Any) -> None:
    t, status, s = sim.target, sim.status(), sim.settings
    ports = {p.public_port for p in proxies(s)}
    for e in endpoints(t):
        url = urllib.parse.urlsplit(e["URL"])
        if e["Interface"] == "public":
            assert (url.scheme, url.hostname) == ("https", status["public_hostname"]) and url.port in ports, e["URL"]
        else:
            assert (url.scheme, url.hostname) == ("http", status["private_ip"]), e["URL"]
    cert = tls.cert_files(s).cert
    auth = tls.https_url(status["public_hostname"], s.tls.keystone_port, "/v3")
    assert cli(t, "--os-cacert %s --os-auth-url %s token issue -f value -c id", cert, auth).stdout.strip()
    refused = t.run(". /root/openrc && unset OS_CACERT && timeout 60 openstack --os-auth-url %s token issue", auth, check=False)
    assert not refused.ok and "certificate" in (refused.stderr + refused.stdout).lower()


def self_links(doc: Any) -> list[str]:
    """Every ``rel: self`` link of a version document (``describedby`` points at the documentation)."""
    if isinstance(doc, dict):
        own = [str(doc["href"])] if doc.get("rel") == "self" and "href" in doc else []
        return own + [h for v in doc.values() for h in self_links(v)]
    if isinstance(doc, list):
        return [h for v in doc for h in self_links(v)]
    return []


def test_version_documents_name_the_public_https_url(sim: Any) -> None:
    t, public = sim.target, sim.status()["public_hostname"]
    cert = tls.cert_files(sim.settings).cert
    for p in proxies(sim.settings):
        if p.websocket:
            continue
        base = tls.https_url(public, p.public_port)
        r = t.run(["curl", "-s", "--max-time", "30", "--cacert", cert, base], check=False)
        assert r.ok, f"{base}: curl exit {r.exit_code}"
        links = [h for h in self_links(json.loads(r.stdout)) if h.startswith("http")]
        assert all(h.startswith(base) for h in links), (p.name, links)
        if p.name != "placement":  # Placement's links are relative
            assert links, f"{p.name}: no link in its version document"


def test_novnc_through_its_tls_proxy_only(sim: Any) -> None:
    s, status = sim.settings, sim.status()
    url = cli(sim.target, "console url show --novnc -f value -c url %s", s.openstack.server_name).stdout.strip()
    base = tls.https_url(status["public_hostname"], s.tls.novnc_port, "/vnc_auto.html")
    assert url.startswith(base + "?path=%3Ftoken%3D"), url
    host = f"{status['public_hostname']}:{s.tls.novnc_port}"
    page, _ = tls_request(sim, s.tls.novnc_port, get("/vnc_auto.html", host))
    assert page.startswith(b"HTTP/1.1 200"), page[:200]
    token = urllib.parse.parse_qs(urllib.parse.urlsplit(urllib.parse.unquote(url.split("?path=", 1)[1])).query)["token"][0]
    upgrade = get(f"/?token={token}", host, "Upgrade: websocket", "Connection: Upgrade", f"Origin: https://{host}",
                  "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol: binary")
    answer, _ = tls_request(sim, s.tls.novnc_port, upgrade)
    assert answer.startswith(b"HTTP/1.1 101"), answer[:300]
    # The console proxy itself listens on loopback only: nothing reaches it in clear from outside.
    with socket.socket() as plain:
        plain.settimeout(5)
        assert plain.connect_ex((status["private_ip"], s.openstack.novnc_port)) != 0
