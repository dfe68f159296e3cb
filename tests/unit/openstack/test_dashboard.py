"""Horizon: per-instance overrides, the Apache site (TLS, the redirect), the readiness probes, the console line."""

from __future__ import annotations

from typing import Any

import pytest

from provision.openstack.dashboard import (
    console_line,
    dashboard_probe_argv,
    redirect_ok,
    redirect_probe_argv,
    render_dashboard_overrides,
    render_dashboard_site,
)

from .samples import ADDRS, SEC, S

FP = ":".join(["0F"] * 32)


def test_console_line_is_the_documented_one() -> None:
    # Issue 14: HTTPS, and the certificate's fingerprint next to the password (which stays last).
    assert console_line(S, ADDRS, "pw", FP) == (
        f"ceph-openstack-ami: admin password for https://ec2-203-0-113-7.compute-1.amazonaws.com/ (certificate SHA-256 {FP}): pw")
    assert "no certificate" in console_line(S, ADDRS, "pw", None)


def test_dashboard_overrides_are_per_instance() -> None:
    text = render_dashboard_overrides(S, SEC, ADDRS)
    ns: dict[str, Any] = {}
    exec(compile(text, "overrides", "exec"), ns)  # it is Python: it must at least run
    assert ns["WEBROOT"] == "/" and ns["SECRET_KEY"] == "DjangoKey"
    assert {ADDRS.public_host, ADDRS.private_ip} <= set(ns["ALLOWED_HOSTS"]) and "*" not in ns["ALLOWED_HOSTS"]
    assert ns["OPENSTACK_KEYSTONE_URL"] == "http://127.0.0.1:5000/v3"
    assert ns["SESSION_COOKIE_SECURE"] is True and ns["CSRF_COOKIE_SECURE"] is True


def vhosts(text: str) -> dict[str, str]:
    """``<VirtualHost *:PORT>`` blocks by port."""
    out = {}
    for block in text.split("<VirtualHost *:")[1:]:
        port, _, body = block.partition(">")
        out[port] = body.split("</VirtualHost>")[0]
    return out


def test_site_serves_the_dashboard_over_tls_and_redirects_plain_http() -> None:
    text = render_dashboard_site(S)
    hosts = vhosts(text)
    assert set(hosts) == {"80", "443"}
    assert "Listen" not in text  # 80 and 443: Debian's ports.conf
    redirect = hosts["80"]
    assert "RewriteRule ^ https://%{SERVER_NAME}%{REQUEST_URI} [R=301,L]" in redirect and "WSGI" not in redirect
    dash = hosts["443"]
    assert "SSLEngine on" in dash and "SSLProtocol -all +TLSv1.2 +TLSv1.3" in dash
    assert 'SSLCertificateFile "/var/lib/ceph-openstack-ami/tls/cert.pem"' in dash
    assert 'SSLCertificateKeyFile "/var/lib/ceph-openstack-ami/secrets/tls/key.pem"' in dash
    assert "WSGIScriptAlias / /usr/share/openstack-dashboard/wsgi.py" in dash


def test_site_on_other_ports_listens_and_redirects_there() -> None:
    s = S.replace(tls={"dashboard_port": 8443, "redirect_port": 8080})
    text = render_dashboard_site(s)
    assert "Listen 8080\nListen 8443\n" in text
    assert "https://%{SERVER_NAME}:8443%{REQUEST_URI}" in vhosts(text)["8080"]


def test_the_owners_certificate_is_served_when_set() -> None:
    s = S.replace(tls={"cert_file": "/etc/ssl/mine.pem", "key_file": "/etc/ssl/private/mine.key"})
    dash = vhosts(render_dashboard_site(s))["443"]
    assert 'SSLCertificateFile "/etc/ssl/mine.pem"' in dash and 'SSLCertificateKeyFile "/etc/ssl/private/mine.key"' in dash


def test_probe_checks_our_certificate_for_the_public_name() -> None:
    argv = dashboard_probe_argv(S, ADDRS.public_host)
    assert argv[argv.index("--cacert") + 1] == "/var/lib/ceph-openstack-ami/tls/cert.pem"
    assert argv[argv.index("--resolve") + 1] == f"{ADDRS.public_host}:443:127.0.0.1"
    assert argv[-1] == f"https://{ADDRS.public_host}/auth/login/" and "-k" not in argv
    # Unknown name, or the owner's certificate (it may name other hosts): TLS, unverified.
    assert dashboard_probe_argv(S, None)[-2:] == ["-k", "https://127.0.0.1/auth/login/"]
    owner = S.replace(tls={"cert_file": "/etc/ssl/mine.pem", "key_file": "/etc/ssl/private/mine.key"})
    assert dashboard_probe_argv(owner, ADDRS.public_host)[-2:] == ["-k", "https://127.0.0.1/auth/login/"]
    assert redirect_probe_argv(S)[-1] == "http://127.0.0.1:80/auth/login/"


@pytest.mark.parametrize(
    ("out", "ok"),
    [
        ("301 https://127.0.0.1/auth/login/", True),
        ("302 https://127.0.0.1/auth/login/", False),
        ("301 http://127.0.0.1/auth/login/", False),
        ("301 https://127.0.0.1/", False),
        ("200 ", False),
        ("000 ", False),
        ("", False),
    ],
)
def test_redirect_ok(out: str, ok: bool) -> None:
    assert redirect_ok(S, out) is ok
