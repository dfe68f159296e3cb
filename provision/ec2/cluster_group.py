"""The cluster's security group (issue 18, point 3), pure: what its members open to each other and to the caller.

One group for every node. Members reach each other through a rule whose source is the group
itself (EC2's self-referencing rule: only instances in the group match, whatever their
addresses, so a relaunched node with a new IP is admitted without a rule change) on the
ports the Ceph and OpenStack daemons use between nodes, and nothing else. The caller's /32
reaches SSH and the TLS front doors (dashboard, public APIs, noVNC), as ``build.ami``'s
builder admits only the caller's SSH.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from ..settings import Settings


@dataclass(frozen=True)
class PortRange:
    """One protocol and port range, and why a node opens it."""

    protocol: str
    first: int
    last: int
    why: str


def member_ports(settings: Settings) -> tuple[PortRange, ...]:
    """What members open to each other: the daemons' ports between nodes (internal, plain HTTP on the private network)."""
    o = settings.openstack
    return (
        PortRange("tcp", 3300, 3300, "Ceph monitors (msgr2)"),
        PortRange("tcp", 6789, 6789, "Ceph monitors (msgr1)"),
        PortRange("tcp", 6800, 7300, "Ceph OSDs and manager"),
        PortRange("tcp", 5672, 5672, "RabbitMQ (nova-compute, the Neutron agent)"),
        PortRange("tcp", o.keystone_port, o.keystone_port, "Keystone, internal endpoint"),
        PortRange("tcp", o.glance_port, o.glance_port, "Glance, internal endpoint"),
        PortRange("tcp", o.cinder_port, o.cinder_port, "Cinder, internal endpoint (volume attachments)"),
        PortRange("tcp", o.placement_port, o.placement_port, "Placement, internal endpoint"),
        PortRange("tcp", o.neutron_port, o.neutron_port, "Neutron, internal endpoint"),
        PortRange("tcp", 5900, 5999, "the guests' VNC consoles, for the controller's noVNC proxy"),
        PortRange("tcp", settings.cluster.join_port, settings.cluster.join_port, "the controller's join service"),
        PortRange("icmp", -1, -1, "path MTU discovery and ping between nodes"),
    )


def caller_ports(settings: Settings) -> tuple[PortRange, ...]:
    """What the caller's address reaches: SSH and the TLS front doors."""
    t = settings.tls
    doors = (
        (settings.ssh_port, "SSH"),
        (t.dashboard_port, "the dashboard (HTTPS)"),
        (t.redirect_port, "HTTP: only a redirect to the dashboard's HTTPS URL"),
        (t.keystone_port, "Keystone, public endpoint"),
        (t.glance_port, "Glance, public endpoint"),
        (t.cinder_port, "Cinder, public endpoint"),
        (t.nova_port, "Nova, public endpoint"),
        (t.placement_port, "Placement, public endpoint"),
        (t.neutron_port, "Neutron, public endpoint"),
        (t.novnc_port, "noVNC"),
    )
    return tuple(PortRange("tcp", p, p, why) for p, why in doors)


def _rule(r: PortRange, source: dict[str, Any]) -> dict[str, Any]:
    return {"IpProtocol": r.protocol, "FromPort": r.first, "ToPort": r.last, **source}


def ingress(group_id: str, caller_cidr: str, settings: Settings) -> list[dict[str, Any]]:
    """``authorize_security_group_ingress``'s ``IpPermissions`` for the cluster's group.

    Raises:
        ValueError: ``caller_cidr`` is not a network.
    """
    net = ipaddress.ip_network(caller_cidr)
    key, field = ("Ipv6Ranges", "CidrIpv6") if net.version == 6 else ("IpRanges", "CidrIp")
    rules = [_rule(r, {"UserIdGroupPairs": [{"GroupId": group_id, "Description": r.why}]}) for r in member_ports(settings)]
    rules += [_rule(r, {key: [{field: str(net), "Description": r.why}]}) for r in caller_ports(settings)]
    return rules
