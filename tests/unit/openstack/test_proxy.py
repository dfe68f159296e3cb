"""The TLS reverse proxies: what the site says, that the services read the proxy headers, and (when
this machine has Apache) the real Apache serving our sites with a real certificate: the redirect,
the dashboard's TLS, the proxies' Host and X-Forwarded-Proto, noVNC's WebSocket upgrade."""

from __future__ import annotations

from provision.openstack.compute import render_nova_conf, render_placement_conf
from provision.openstack.identity import render_keystone_conf
from provision.openstack.image import render_glance_api_conf
from provision.openstack.ini import parse_ini
from provision.openstack.network import render_neutron_conf
from provision.openstack.proxy import LOG_FORMAT, Proxy, proxies, render_proxy_site
from provision.openstack.volume import render_cinder_conf

from .samples import ADDRS, SEC, S
from .test_dashboard import vhosts


def test_one_proxy_per_public_api_and_novnc_on_tripleo_ports() -> None:
    assert proxies(S) == [
        Proxy("keystone", 13000, 5000),
        Proxy("glance", 13292, 9292),
        Proxy("cinderv3", 13776, 8776),
        Proxy("nova", 13774, 8774),
        Proxy("placement", 13778, 8778),
        Proxy("neutron", 13696, 9696),
        Proxy("novnc", 13080, 6080, websocket=True),
    ]


def test_proxy_site_terminates_tls_and_hands_over_to_loopback() -> None:
    text = render_proxy_site(S)
    hosts = vhosts(text)
    assert set(hosts) == {"13000", "13292", "13776", "13774", "13778", "13696", "13080"}
    for p in proxies(S):
        assert f"Listen {p.public_port}\n" in text
        body = hosts[str(p.public_port)]
        assert "SSLEngine on" in body and 'SSLCertificateKeyFile "/var/lib/ceph-openstack-ami/secrets/tls/key.pem"' in body
        assert "ProxyPreserveHost On" in body and 'RequestHeader set X-Forwarded-Proto "https"' in body
        upgrade = " upgrade=websocket" if p.websocket else ""
        assert f"ProxyPass / http://127.0.0.1:{p.backend_port}/ nocanon disablereuse=On{upgrade}\n" in body
        assert f"CustomLog /var/log/apache2/coa-tls-{p.name}-access.log {LOG_FORMAT}" in body
    # noVNC's console token rides in the query string and the referrer: neither is logged.
    assert "%q" not in LOG_FORMAT and "%r" not in LOG_FORMAT and "Referer" not in LOG_FORMAT and "%U" in LOG_FORMAT


def test_services_behind_the_proxies_read_its_headers() -> None:
    confs = {
        "keystone": render_keystone_conf(S, SEC),
        "glance": render_glance_api_conf(S, SEC, ADDRS),
        "cinder": render_cinder_conf(S, SEC, ADDRS),
        "nova": render_nova_conf(S, SEC, ADDRS),
        "neutron": render_neutron_conf(S, SEC, ADDRS),
    }
    for name, text in confs.items():
        assert parse_ini(text)["oslo_middleware"]["enable_proxy_headers_parsing"] == "true", name
    # Placement's pipeline has no HTTPProxyToWSGI (its version document's links are relative).
    assert "oslo_middleware" not in parse_ini(render_placement_conf(S, SEC, ADDRS))
    # Glance names the URL each client used, not one fixed public endpoint.
    assert "public_endpoint" not in parse_ini(confs["glance"])["DEFAULT"]
