"""Neutron: flat linuxbridge networking on the guests' link."""

from __future__ import annotations

from provision.openstack.ini import parse_ini
from provision.openstack.network import render_dhcp_agent_ini, render_guest_net_unit, render_linuxbridge_agent_ini, render_neutron_conf

from .samples import ADDRS, SEC, S


def test_neutron_is_flat_linuxbridge_on_the_guest_link() -> None:
    conf = parse_ini(render_neutron_conf(S, SEC, ADDRS))
    assert conf["DEFAULT"]["core_plugin"] == "ml2" and conf["DEFAULT"]["service_plugins"] == ""
    assert conf["experimental"]["linuxbridge"] == "true"
    assert conf["nova"]["password"] == "NvSvc" and "NeDb@localhost/neutron?" in conf["database"]["connection"]
    agent = parse_ini(render_linuxbridge_agent_ini(S))
    assert agent["linux_bridge"]["physical_interface_mappings"] == "provider:coa-phys"
    assert agent["vxlan"]["enable_vxlan"] == "false"
    assert parse_ini(render_dhcp_agent_ini(S))["DEFAULT"]["interface_driver"] == "linuxbridge"
    unit = render_guest_net_unit(S)
    assert "ip link add coa-gw type veth peer name coa-phys" in unit and "10.99.0.1/24 dev coa-gw" in unit


def test_neutron_tells_nova_through_the_internal_endpoint() -> None:
    # The notifier chooses Nova's endpoint by `endpoint_type` (default "public": the TLS proxy,
    # whose per-instance certificate no service trusts; the guest then waits for its
    # "network-vif-plugged" event until Nova gives up).
    nova = parse_ini(render_neutron_conf(S, SEC, ADDRS))["nova"]
    assert nova["endpoint_type"] == "internal" and nova["valid_interfaces"] == "internal"
