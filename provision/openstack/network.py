"""Neutron: neutron.conf, ML2 (flat provider networks on linuxbridge), the linuxbridge and DHCP
agents, the unit that makes the guests' link (a veth pair inside the instance), and the
guests' network and subnet made through the API.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from ..settings import Settings
from ..target import Target
from .addresses import Addresses
from .api import Cloud, agent, required
from .infra import SchemaCommands
from .ini import PROXY_HEADERS_SECTION, FileSpec, authtoken_section, database_section, managed, rabbit_url, render_managed, service_auth_section
from .profile import OpenStackProfile
from .secrets import Secrets

#: The neutron database's schema, from neutron.conf and the ML2 plugin's configuration.
SCHEMAS: SchemaCommands = {
    "neutron": [("neutron", ["neutron-db-manage", "--config-file", "/etc/neutron/neutron.conf",
                             "--config-file", "/etc/neutron/plugins/ml2/ml2_conf.ini", "upgrade", "heads"])],
}


def render_neutron_conf(settings: Settings, sec: Secrets, addrs: Addresses) -> str:
    """neutron.conf: ML2, no service plugins (no routers: the guests' network is flat), Nova told of port events."""
    o = settings.openstack
    return render_managed(
        [
            (
                "DEFAULT",
                [
                    ("bind_host", "0.0.0.0"),
                    ("bind_port", o.neutron_port),
                    ("core_plugin", "ml2"),
                    ("service_plugins", ""),
                    ("auth_strategy", "keystone"),
                    ("transport_url", rabbit_url(sec.rabbit)),
                    ("notify_nova_on_port_status_changes", True),
                    ("notify_nova_on_port_data_changes", True),
                    ("api_workers", o.neutron_api_workers),
                    ("rpc_workers", o.neutron_rpc_workers),
                    ("rpc_state_report_workers", 1),
                    ("dhcp_agents_per_network", 1),
                    ("host", settings.hostname),
                    ("state_path", "/var/lib/neutron"),
                    ("log_dir", "/var/log/neutron"),
                ],
            ),
            database_section("database", "neutron", sec.neutron_db, "neutron"),
            authtoken_section(settings, addrs, "neutron", sec.neutron_service),
            # Neutron's Nova notifier (the guest's "network-vif-plugged" event) picks Nova's
            # endpoint by its own option, not valid_interfaces: its default ("public") is the
            # TLS proxy, whose per-instance certificate no service trusts.
            service_auth_section("nova", settings, addrs, "nova", sec.nova_service, extra=[("endpoint_type", "internal")]),
            ("oslo_concurrency", [("lock_path", "/var/lib/neutron/tmp")]),
            ("oslo_messaging_notifications", [("driver", "noop")]),
            PROXY_HEADERS_SECTION,
            ("agent", [("root_helper", "sudo neutron-rootwrap /etc/neutron/rootwrap.conf"), ("report_interval", 10)]),
            # Zed marks the linuxbridge mechanism "experimental" (its maintainers moved to OVN);
            # it is still the smallest L2 for one host: no OVS database, no controller.
            ("experimental", [("linuxbridge", True)]),
        ],
    )


def render_ml2_conf(settings: Settings) -> str:
    """ml2_conf.ini: flat provider networks only, on the linuxbridge mechanism."""
    o = settings.openstack
    return render_managed(
        [
            ("ml2", [("type_drivers", "flat"), ("tenant_network_types", ""), ("mechanism_drivers", "linuxbridge"), ("extension_drivers", "port_security")]),
            ("ml2_type_flat", [("flat_networks", o.provider_physnet)]),
        ],
    )


def render_linuxbridge_agent_ini(settings: Settings) -> str:
    """linuxbridge_agent.ini: the provider network is the instance's own bridge; no overlay.

    Security groups are not enforced on the guests' ports: the bridge reaches nothing but the
    instance itself (no uplink, no forwarding), and enforcing them would need the host's
    ``br_netfilter`` module, which an instance may not be able to load.
    """
    o = settings.openstack
    return render_managed(
        [
            # An interface mapping, not a bridge mapping: Nova plugs guests into the bridge the
            # agent names after the network (brq...), and only an interface mapping puts the
            # provider side into that same bridge.
            ("linux_bridge", [("physical_interface_mappings", f"{o.provider_physnet}:{o.provider_interface}")]),
            ("vxlan", [("enable_vxlan", False)]),
            ("securitygroup", [("enable_security_group", False), ("firewall_driver", "noop")]),
            ("agent", [("polling_interval", 2)]),
        ],
    )


def render_dhcp_agent_ini(settings: Settings) -> str:
    """dhcp_agent.ini: dnsmasq in a network namespace, plugged into the bridge by the linuxbridge driver."""
    return render_managed(
        [
            (
                "DEFAULT",
                [
                    ("interface_driver", "linuxbridge"),
                    ("dhcp_driver", "neutron.agent.linux.dhcp.Dnsmasq"),
                    ("enable_isolated_metadata", False),
                    ("force_metadata", False),
                    ("num_sync_threads", 1),
                ],
            )
        ],
    )


def render_guest_net_unit(settings: Settings) -> str:
    """The unit that makes the guests' link (a veth pair, the instance's address on its end), before Neutron's agents."""
    o = settings.openstack
    prefix = o.provider_cidr.split("/", 1)[1]
    phys, host, addr = o.provider_interface, o.provider_host_interface, f"{o.provider_gateway}/{prefix}"
    return "\n".join([
        managed().rstrip("\n"),
        "[Unit]",
        f"Description=ceph-openstack-ami: the guests' network link ({host} {addr} <-> {phys}, Neutron's provider interface)",
        "Before=neutron-linuxbridge-agent.service neutron-dhcp-agent.service nova-compute.service",
        "After=network-pre.target",
        "",
        "[Service]",
        "Type=oneshot",
        "RemainAfterExit=yes",
        f"ExecStart=/bin/sh -c 'ip link show {host} >/dev/null 2>&1 || ip link add {host} type veth peer name {phys}'",
        f"ExecStart=/bin/sh -c 'ip -4 addr show dev {host} | grep -q \" {addr} \" || ip addr add {addr} dev {host}'",
        f"ExecStart=/bin/sh -c 'ip link set {phys} up && ip link set {host} up'",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])


def neutron_files(settings: Settings, prof: OpenStackProfile, sec: Secrets, addrs: Addresses) -> list[FileSpec]:
    """neutron.conf (0640 root:neutron)."""
    return [FileSpec("/etc/neutron/neutron.conf", render_neutron_conf(settings, sec, addrs), 0o640, "root", "neutron", prof.neutron_units)]


def agent_files(settings: Settings, prof: OpenStackProfile) -> list[FileSpec]:
    """ml2_conf.ini, linuxbridge_agent.ini and dhcp_agent.ini (no secrets)."""
    neutron = prof.neutron_units
    return [
        FileSpec("/etc/neutron/plugins/ml2/ml2_conf.ini", render_ml2_conf(settings), 0o644, "root", "neutron", neutron),
        FileSpec("/etc/neutron/plugins/ml2/linuxbridge_agent.ini", render_linuxbridge_agent_ini(settings), 0o644, "root", "neutron", neutron),
        FileSpec("/etc/neutron/dhcp_agent.ini", render_dhcp_agent_ini(settings), 0o644, "root", "neutron", neutron),
    ]


def guest_net_files(settings: Settings, prof: OpenStackProfile) -> list[FileSpec]:
    """The guests' link unit."""
    return [FileSpec(f"/etc/systemd/system/{prof.guest_net_unit}", render_guest_net_unit(settings), 0o644, "root", "root", ())]


def _oldest_network(cloud: Cloud, name: str) -> str | None:
    """The id of the first network made called ``name``, or None."""
    nets = cloud.call("GET", f"{cloud.neutron}/networks?{urllib.parse.urlencode({'name': name})}").get("networks", [])
    return str(sorted(nets, key=lambda n: str(n.get("created_at", "")))[0]["id"]) if nets else None


def ensure_network(cloud: Cloud, settings: Settings) -> list[str]:
    """The guests' flat provider network and its DHCP subnet; what was made."""
    o = settings.openstack
    did: list[str] = []
    net_id = _oldest_network(cloud, o.network_name)
    if net_id is None:
        body: dict[str, Any] = {"network": {"name": o.network_name, "shared": True, "provider:network_type": "flat",
                                            "provider:physical_network": o.provider_physnet, "port_security_enabled": False}}
        net_id = str(cloud.call("POST", f"{cloud.neutron}/networks", body)["network"]["id"])
        did.append(f"created network {o.network_name} (flat on {o.provider_physnet})")
    subnets = cloud.call("GET", f"{cloud.neutron}/subnets?network_id={net_id}").get("subnets", [])
    if not subnets:
        first, last = o.provider_pool
        body = {"subnet": {"name": o.network_name + "-v4", "network_id": net_id, "ip_version": 4, "cidr": o.provider_cidr,
                           "gateway_ip": o.provider_gateway, "enable_dhcp": True,
                           "allocation_pools": [{"start": first, "end": last}], "dns_nameservers": []}}
        cloud.call("POST", f"{cloud.neutron}/subnets", body)
        did.append(f"created subnet {o.provider_cidr} (DHCP {first}-{last})")
    return did


def network_id(cloud: Cloud, settings: Settings) -> str:
    """The id of the guests' network (OpenStackError when provisioning never made it)."""
    name = settings.openstack.network_name
    return required(_oldest_network(cloud, name), f"Network {name!r}")


def network_step(target: Target, settings: Settings) -> tuple[bool, str]:
    """The guests' flat network with DHCP, and the demo flavor (through the API on the host)."""
    r = agent(target, "network")
    return bool(r.get("changed")), str(r.get("detail", ""))
