"""The first-boot fence: no service of the instance is reachable from the network until its secrets are its own.

A public image holds keys everyone has (until each instance's first boot replaces them), and the
services that hold them (Ceph's monitor, RabbitMQ, the OpenStack APIs) start before the per-instance
jobs have finished. So at every boot, before the network is up, an nftables table closes every
inbound connection that does not come from the instance itself, except SSH (its host keys are made
per instance by cloud-init before sshd starts) and what the network needs (DHCP replies, ICMP, the
replies to the instance's own requests such as the metadata service's). When every per-instance job
has succeeded, the table is removed; when one fails, the fence stays (closed, not open).

Measured against the alternative (the monitor first on loopback only, then restarted on its address,
and likewise for every API): one ``nft -f`` costs milliseconds and no restart.
"""

from __future__ import annotations

from ..paths import CONFIG_DIR

TABLE = "coa_fence"
NFT = "/usr/sbin/nft"
FENCE_RULES = f"{CONFIG_DIR}/fence.nft"
UNFENCE_RULES = f"{CONFIG_DIR}/unfence.nft"
#: The package that ships ``nft``.
PACKAGE = "nftables"


def render_fence(ssh_port: int = 22) -> str:
    """The nftables file that puts the fence up (idempotent: the table is declared, deleted, made anew)."""
    return f"""# Managed by ceph-openstack-ami (provision/boot/fence.py): closes the instance to the network
# at boot until its per-instance secrets are made; coa-unfence.service removes it.
table inet {TABLE}
delete table inet {TABLE}
table inet {TABLE} {{
\tchain input {{
\t\ttype filter hook input priority filter - 10; policy drop;
\t\tiifname "lo" accept
\t\tct state established,related accept
\t\tmeta l4proto {{ icmp, ipv6-icmp }} accept
\t\tudp sport 67 udp dport 68 accept
\t\tudp sport 547 udp dport 546 accept
\t\ttcp dport {ssh_port} accept
\t\tcounter drop
\t}}
}}
"""


def render_unfence() -> str:
    """The nftables file that takes the fence down (succeeds whether or not it is up)."""
    return f"""# Managed by ceph-openstack-ami (provision/boot/fence.py): opens the instance once its secrets are its own.
table inet {TABLE}
delete table inet {TABLE}
"""
