"""ceph.conf for a one-host cluster: rendered from settings, addresses rewritten in place.

Pure functions only (text in, text out), stdlib only: this module also runs on the
instance at boot under Debian's ``/usr/bin/python3`` with no third-party packages.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Sequence

from ..exceptions import ConfigError

#: msgr2 and legacy (msgr1) monitor ports.
MON_PORT_V2 = 3300
MON_PORT_V1 = 6789

CONF_HEADER = (
    "# Managed by ceph-openstack-ami (provision/cephconf.py).\n"
    "# mon_host and public_network are rewritten at boot when the instance's address changes.\n"
)


@dataclass(frozen=True)
class HealthSetting:
    """A configuration value that keeps a health check quiet, and why that is honest on one host."""

    check: str
    option: str
    value: str
    reason: str


#: Every health check this cluster silences or re-thresholds, with the reason.
#: Nothing else is muted: any other warning is a real problem and keeps HEALTH_OK away.
SINGLE_HOST_HEALTH_SETTINGS: tuple[HealthSetting, ...] = (
    HealthSetting(
        check="POOL_NO_REDUNDANCY",
        option="mon_warn_on_pool_no_redundancy",
        value="false",
        reason=(
            "one host holds exactly one copy of every object (pool size 1) by design; "
            "the check would fire for every pool, including the one the manager creates itself"
        ),
    ),
    HealthSetting(
        check="MON_DISK_LOW",
        option="mon_data_avail_warn",
        value="10",
        reason=(
            "re-thresholded, not muted: the monitor store shares the root filesystem with the OS, "
            "OpenStack and the OSD files instead of sitting on a disk of its own, and the default "
            "(warn below 30 % free) fires on a normally used root disk with gigabytes free; "
            "it still warns below 10 % and the monitor still stops at 5 % (mon_data_avail_crit)"
        ),
    ),
)

#: Settings that make one host a complete cluster. None of them hides a health check.
SINGLE_HOST_SETTINGS: tuple[tuple[str, str], ...] = (
    ("osd_pool_default_size", "1"),
    ("osd_pool_default_min_size", "1"),
    ("osd_crush_chooseleaf_type", "0"),
    ("mon_allow_pool_size_one", "true"),
)


def mon_addrvec(ip: str) -> str:
    """The monitor address vector for ``ip``: ``[v2:IP:3300,v1:IP:6789]``.

    Raises:
        ConfigError: ``ip`` is not an IPv4 address.
    """
    check_ipv4(ip)
    return f"[v2:{ip}:{MON_PORT_V2},v1:{ip}:{MON_PORT_V1}]"


def check_ipv4(ip: str) -> str:
    """Return ``ip`` when it is a plain IPv4 address; raise ConfigError otherwise."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError as e:
        raise ConfigError(f"{ip!r} is not an IP address", hint="pass the instance's private IPv4 (local-ipv4)") from e
    if addr.version != 4:
        raise ConfigError(f"{ip!r} is not an IPv4 address", hint="this cluster is addressed by the instance's private IPv4")
    return ip


def check_network(network: str, ip: str) -> str:
    """Return ``network`` normalised (``10.0.0.0/24``); it must contain ``ip``.

    Raises:
        ConfigError: not a network, or ``ip`` lies outside it.
    """
    check_ipv4(ip)
    try:
        net = ipaddress.ip_network(network, strict=False)
    except ValueError as e:
        raise ConfigError(f"{network!r} is not a network (CIDR)", hint="e.g. 172.31.16.0/20") from e
    if ipaddress.ip_address(ip) not in net:
        raise ConfigError(f"Public network {net} does not contain the monitor address {ip}")
    return str(net)


def render_ceph_conf(
    *,
    fsid: str,
    ip: str,
    network: str,
    mon_id: str = "a",
    osd_memory_target_mib: int = 1024,
    osd_size_gib: int = 10,
) -> str:
    """Render ``/etc/ceph/ceph.conf`` for a one-host cluster.

    Args:
        fsid: the cluster's UUID.
        ip: the instance's private IPv4; the monitor listens on it (msgr2 and msgr1).
        network: the CIDR of the interface holding ``ip`` (``public_network``).
        mon_id: the monitor's id.
        osd_memory_target_mib: the memory each OSD aims to stay under.
        osd_size_gib: size of each OSD's file-backed BlueStore block device.
    """
    return _render(fsid=fsid, ip=ip, network=network, members=[f"mon_initial_members = {mon_id}"],
                   mon_host=mon_addrvec(ip), osd_memory_target_mib=osd_memory_target_mib, osd_size_gib=osd_size_gib)


def render_member_conf(
    *,
    fsid: str,
    ip: str,
    network: str,
    mon_ips: Sequence[str],
    osd_memory_target_mib: int = 1024,
    osd_size_gib: int = 10,
) -> str:
    """Render ``/etc/ceph/ceph.conf`` for a node of a cluster of several (issue 18).

    The same settings as a single host (every node must agree on the pool defaults and the
    health thresholds; the pools' replication is changed per pool, see ``replication.py``),
    but ``mon_host`` lists every monitor (space-separated vectors, as cephadm writes them) and
    there is no ``mon_initial_members``: the cluster exists, a new monitor joins its quorum.

    Raises:
        ConfigError: no monitor, or an address or network that is not IPv4 / does not hold ``ip``.
    """
    if not mon_ips:
        raise ConfigError("A cluster node's ceph.conf needs at least one monitor address")
    for mon in mon_ips:
        check_network(network, mon)
    return _render(fsid=fsid, ip=ip, network=network, members=[],
                   mon_host=" ".join(mon_addrvec(m) for m in mon_ips),
                   osd_memory_target_mib=osd_memory_target_mib, osd_size_gib=osd_size_gib)


def _render(
    *, fsid: str, ip: str, network: str, members: list[str], mon_host: str, osd_memory_target_mib: int, osd_size_gib: int
) -> str:
    net = check_network(network, ip)
    if osd_memory_target_mib < 1 or osd_size_gib < 1:
        raise ConfigError("OSD memory target and size must be positive")
    lines = [
        CONF_HEADER.rstrip("\n"),
        "[global]",
        f"fsid = {fsid}",
        *members,
        f"mon_host = {mon_host}",
        f"public_network = {net}",
        "auth_cluster_required = cephx",
        "auth_service_required = cephx",
        "auth_client_required = cephx",
        "auth_allow_insecure_global_id_reclaim = false",
    ]
    lines += [f"{k} = {v}" for k, v in SINGLE_HOST_SETTINGS]
    lines.append("# health checks re-configured for a single host (see cephconf.SINGLE_HOST_HEALTH_SETTINGS)")
    lines += [f"{h.option} = {h.value}" for h in SINGLE_HOST_HEALTH_SETTINGS]
    lines += [
        "",
        "[osd]",
        "osd_objectstore = bluestore",
        "# BlueStore creates a sparse file named 'block' in the OSD's data dir (leave bluestore_block_path unset)",
        "bluestore_block_create = true",
        f"bluestore_block_size = {osd_size_gib * 1024**3}",
        f"osd_memory_target = {osd_memory_target_mib * 1024**2}",
        "",
    ]
    return "\n".join(lines)


_SECTION = re.compile(r"^\s*\[(?P<name>[^\]]+)\]\s*$")
_OPTION = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_ .-]+?)\s*=\s*(?P<value>.*?)\s*$")


def _norm(key: str) -> str:
    """Ceph treats ``mon host``, ``mon-host`` and ``mon_host`` as one option."""
    return re.sub(r"[ -]+", "_", key.strip().lower())


def get_option(text: str, key: str, section: str = "global") -> str | None:
    """The value of ``key`` in ``[section]`` of a ceph.conf text, or None."""
    current = None
    for line in text.splitlines():
        m = _SECTION.match(line)
        if m:
            current = m.group("name").strip()
            continue
        if current != section or line.lstrip().startswith(("#", ";")):
            continue
        m = _OPTION.match(line)
        if m and _norm(m.group("key")) == _norm(key):
            return m.group("value")
    return None


def set_options(text: str, values: dict[str, str], section: str = "global") -> str:
    """Return ``text`` with each ``key = value`` of ``values`` set in ``[section]``.

    Existing lines are rewritten in place (spelling of the key normalised); missing
    keys are appended to the end of the section. Comments and other sections are kept.
    """
    wanted = {_norm(k): (k, v) for k, v in values.items()}
    seen: set[str] = set()
    out: list[str] = []
    current: str | None = None
    lines = text.splitlines()

    def flush_missing() -> None:
        if current == section:
            # append before trailing blank lines of the section
            tail: list[str] = []
            while out and not out[-1].strip():
                tail.append(out.pop())
            for nk, (k, v) in wanted.items():
                if nk not in seen:
                    out.append(f"{k} = {v}")
                    seen.add(nk)
            out.extend(tail)

    for line in lines:
        m = _SECTION.match(line)
        if m:
            flush_missing()
            current = m.group("name").strip()
            out.append(line)
            continue
        opt = _OPTION.match(line)
        if current == section and opt and not line.lstrip().startswith(("#", ";")):
            nk = _norm(opt.group("key"))
            if nk in wanted:
                if nk in seen:
                    continue  # drop duplicates: the last one would win in Ceph, keep exactly one
                seen.add(nk)
                out.append(f"{opt.group('indent')}{wanted[nk][0]} = {wanted[nk][1]}")
                continue
        out.append(line)
    flush_missing()
    if current != section and any(nk not in seen for nk in wanted):
        if out and out[-1].strip():
            out.append("")
        out.append(f"[{section}]")
        out += [f"{k} = {v}" for nk, (k, v) in wanted.items() if nk not in seen]
    return "\n".join(out) + "\n"


def readdress_conf(text: str, ip: str, network: str) -> str:
    """Return ceph.conf ``text`` pointing at ``ip``: ``mon_host``, ``public_network`` and any ``public_addr``.

    Everything else, comments included, is kept. Applying it twice gives the same text.
    """
    values = {"mon_host": mon_addrvec(ip), "public_network": check_network(network, ip)}
    if get_option(text, "public_addr") is not None:
        values["public_addr"] = ip
    return set_options(text, values)


def network_of(ip_addr_output: str, ip: str) -> str | None:
    """The CIDR of the interface holding ``ip``, from ``ip -o -4 addr show``; None when none holds it.

    >>> network_of("2: eth0    inet 10.0.1.7/24 brd 10.0.1.255 scope global eth0", "10.0.1.7")
    '10.0.1.0/24'
    """
    for line in ip_addr_output.splitlines():
        fields = line.split()
        for i, f in enumerate(fields[:-1]):
            if f == "inet" and fields[i + 1].split("/")[0] == ip:
                return str(ipaddress.ip_interface(fields[i + 1]).network)
    return None
