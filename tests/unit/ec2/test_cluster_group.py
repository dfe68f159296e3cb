"""The cluster's security group as data: members reach each other only through the group, the caller only the front doors."""

from __future__ import annotations

import pytest

from provision.ec2.cluster_group import caller_ports, ingress, member_ports
from provision.settings import Settings

S = Settings()


def test_members_open_the_daemons_ports_to_the_group_only() -> None:
    rules = ingress("sg-123", "203.0.113.7/32", S)
    member = [r for r in rules if "UserIdGroupPairs" in r]
    assert {(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in member} >= {
        ("tcp", 3300, 3300), ("tcp", 6789, 6789), ("tcp", 6800, 7300), ("tcp", 5672, 5672), ("tcp", 13443, 13443)}
    assert all(r["UserIdGroupPairs"][0]["GroupId"] == "sg-123" and "IpRanges" not in r for r in member)
    assert len(member) == len(member_ports(S))


def test_the_caller_reaches_ssh_and_the_tls_front_doors_and_nothing_internal() -> None:
    rules = ingress("sg-123", "203.0.113.7/32", S)
    caller = [r for r in rules if "IpRanges" in r]
    assert {r["IpRanges"][0]["CidrIp"] for r in caller} == {"203.0.113.7/32"}
    ports = {r["FromPort"] for r in caller}
    assert {22, 443, 80, 13000, 13080} <= ports
    assert not ports & {3300, 6789, 5672, 5000, 8776, 13443}, "no daemon port is open to the caller"
    assert len(caller) == len(caller_ports(S))
    assert not any(r.get("IpRanges", [{}])[0].get("CidrIp") == "0.0.0.0/0" for r in rules)


def test_an_ipv6_caller_gets_ipv6_ranges_and_a_bad_one_is_refused() -> None:
    rules = ingress("sg-1", "2001:db8::1/128", S)
    assert all("Ipv6Ranges" in r for r in rules if "UserIdGroupPairs" not in r)
    with pytest.raises(ValueError):
        ingress("sg-1", "not-a-cidr", S)


def test_every_rule_says_why() -> None:
    for r in ingress("sg-1", "198.51.100.1/32", S):
        pairs = r.get("UserIdGroupPairs") or r.get("IpRanges")
        assert pairs[0]["Description"]
