"""Ceph's command line, bounded: ``ceph``/``rbd`` calls as client.admin, cephx auth helpers, the cluster's paths.

Every call has ``--connect-timeout`` and an overall ``timeout``: none can hang when no monitor
answers. Standard library only (the boot jobs use these on the instance).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..exceptions import ConfigError, ProvisionError
from ..settings import CephSettings, Settings
from ..systemd import bounded
from ..target import Result, Target
from . import conf as cephconf

#: Seconds any single ceph/rbd/ceph-mon command may run before it is killed.
COMMAND_TIMEOUT_S = 120


#: The daemons' user and group, created by the packages.
CEPH_USER = "ceph"


# --- paths ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Paths:
    """Where the cluster's files live (Debian and Ubuntu agree)."""

    cluster: str
    mon_id: str
    mgr_id: str

    @property
    def conf(self) -> str:
        return f"/etc/ceph/{self.cluster}.conf"

    def keyring(self, entity: str) -> str:
        """``/etc/ceph/ceph.client.NAME.keyring`` for clients, the data dir's keyring for daemons."""
        kind, _, ident = entity.partition(".")
        if kind in ("mon", "mgr", "osd"):
            return f"/var/lib/ceph/{kind}/{self.cluster}-{ident or self.mon_id}/keyring"
        return f"/etc/ceph/{self.cluster}.{entity}.keyring"

    @property
    def admin_keyring(self) -> str:
        return self.keyring("client.admin")

    @property
    def mon_dir(self) -> str:
        return f"/var/lib/ceph/mon/{self.cluster}-{self.mon_id}"

    @property
    def mgr_dir(self) -> str:
        return f"/var/lib/ceph/mgr/{self.cluster}-{self.mgr_id}"

    def osd_dir(self, osd_id: int) -> str:
        return f"/var/lib/ceph/osd/{self.cluster}-{osd_id}"

    @property
    def tmp_dir(self) -> str:
        return "/var/lib/ceph/tmp"


def paths(settings: Settings) -> Paths:
    """The paths of the cluster described by ``settings``."""
    c = settings.ceph
    return Paths(c.cluster, c.mon_id, c.mgr_id)


def ceph_argv(cs: CephSettings, *args: str, keyring: str | None = None, name: str | None = None) -> list[str]:
    """``ceph`` with the cluster, a connect timeout and an overall timeout."""
    argv = ["ceph", "--cluster", cs.cluster, "--connect-timeout", str(cs.connect_timeout_s)]
    if name:
        argv += ["--name", name]
    if keyring:
        argv += ["--keyring", keyring]
    return bounded(argv + list(args), cs.connect_timeout_s + COMMAND_TIMEOUT_S)


def ceph(
    target: Target,
    settings: Settings,
    *args: str,
    check: bool = True,
    stdin: str | bytes | None = None,
    keyring: str | None = None,
) -> Result:
    """Run a bounded ``ceph`` command as client.admin."""
    return target.run(ceph_argv(settings.ceph, *args, keyring=keyring), check=check, stdin=stdin)


def ceph_json(target: Target, settings: Settings, *args: str, keyring: str | None = None) -> Any:
    """Run a bounded ``ceph ... -f json`` and parse its output."""
    out = ceph(target, settings, *args, "-f", "json", keyring=keyring).stdout
    try:
        return json.loads(out) if out.strip() else None
    except json.JSONDecodeError as e:
        raise ProvisionError(f"`ceph {' '.join(args)}` printed no JSON: {out[:200]!r}") from e


def rbd(target: Target, settings: Settings, *args: str, check: bool = True) -> Result:
    """Run a bounded ``rbd`` command as client.admin (rbd has no --connect-timeout; timeout bounds it)."""
    cs = settings.ceph
    argv = ["rbd", "--cluster", cs.cluster, "--client-mount-timeout", str(cs.connect_timeout_s), *args]
    return target.run(bounded(argv), check=check)


# --- small facts about the host ------------------------------------------------------
def interface_network(target: Target, ip: str) -> str:
    """The CIDR of the interface that holds ``ip`` (``ip -o -4 addr show``).

    Raises:
        ConfigError: no interface holds ``ip``.
    """
    out = target.run(["ip", "-o", "-4", "addr", "show"]).stdout
    network = cephconf.network_of(out, ip)
    if network is None:
        raise ConfigError(
            f"No interface of {target.name} holds {ip}",
            hint="pass the instance's private IPv4 (metadata local-ipv4); the monitor can only bind a local address",
        )
    return network


def ceph_version(target: Target) -> str:
    r = target.run(["ceph", "--version"], check=False)
    return r.stdout.split(" (")[0].replace("ceph version ", "") if r.ok else "?"


