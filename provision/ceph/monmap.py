"""Monitor re-addressing: parse the monmap, plan the surgery that points it at a new IP.

Pure logic, stdlib only (it runs on the instance at boot). The planner decides;
:func:`provision.ceph_boot.readdress` executes. Facts behind the plan
(measured on Ceph 16.2, see ``ceph-notes.md``):

* Changing ``ceph.conf`` alone is not enough: the monitor binds the address stored
  in its monmap, so the map itself must be rewritten and injected while the
  monitor is stopped.
* The monitor must carry the msgr2 + msgr1 vector ``[v2:IP:3300,v1:IP:6789]``. A
  v1-only entry (what ``monmaptool --add a IP:6789`` writes) leaves
  ``MON_MSGR2_NOT_ENABLED`` and hangs every client given a v2 address, so a
  v1-only map for the *same* IP is re-addressed too: the plan is empty only when
  the map already holds exactly the wanted vector and ceph.conf already points at it.
* ``monmaptool`` edits a copy; ``ceph-mon --inject-monmap`` is the single commit
  point. Everything before it is re-runnable, so a job killed half-way simply
  starts again from a fresh extract.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from ..exceptions import ConfigError
from . import conf as cephconf


@dataclass(frozen=True)
class Addr:
    """One entry of a monitor's address vector."""

    type: str  # "v2", "v1" or "any"
    ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.type}:{self.ip}:{self.port}"


@dataclass(frozen=True)
class Mon:
    """One monitor of the map: its name (``a``, not ``mon.a``) and address vector."""

    name: str
    addrs: tuple[Addr, ...]

    @property
    def addrvec(self) -> str:
        """The vector as Ceph writes it in ceph.conf: ``[v2:IP:3300,v1:IP:6789]``."""
        return "[" + ",".join(str(a) for a in self.addrs) + "]"


@dataclass(frozen=True)
class MonMap:
    """What a monmap says about the monitors (enough to plan; not the whole map)."""

    fsid: str
    epoch: int
    mons: tuple[Mon, ...]

    def get(self, name: str) -> Mon | None:
        """The monitor called ``name``, or None."""
        return next((m for m in self.mons if m.name == name), None)


@dataclass(frozen=True)
class Command:
    """One command of a plan: an argv list and the reason it is there."""

    argv: tuple[str, ...]
    why: str

    def __str__(self) -> str:
        return " ".join(self.argv)


@dataclass(frozen=True)
class Plan:
    """What to do to put the monitor on a new address.

    ``commands`` run in order (the monitor stopped); ``conf`` is the new ceph.conf
    text to write after them, or None when ceph.conf is already right. An empty
    plan means nothing changed; ``reason`` says why in one line either way.
    """

    commands: tuple[Command, ...] = ()
    conf: str | None = None
    reason: str = ""
    old: str = ""
    new: str = ""

    @property
    def empty(self) -> bool:
        """True when there is nothing to do."""
        return not self.commands and self.conf is None

    def describe(self) -> list[str]:
        """The plan as lines a human reads (a dry run)."""
        lines = [f"$ {c}    # {c.why}" for c in self.commands]
        if self.conf is not None:
            lines.append("write ceph.conf with mon_host/public_network for the new address")
        return lines or [f"nothing to do: {self.reason}"]


_ADDR = re.compile(r"^(?:(?P<type>v1|v2|any):)?(?P<ip>[0-9.]+|\[[0-9a-fA-F:.]+\]):(?P<port>\d+)(?:/\d+)?$")
_MON_LINE = re.compile(r"^\s*(?P<rank>\d+):\s+(?P<addrs>\S+)\s+mon\.(?P<name>\S+)\s*$")


def parse_addrvec(text: str) -> tuple[Addr, ...]:
    """Parse ``[v2:1.2.3.4:3300/0,v1:1.2.3.4:6789/0]``, ``v1:1.2.3.4:6789/0`` or ``1.2.3.4:6789/0``.

    An address without a type prefix is legacy msgr1 (``v1``).

    Raises:
        ValueError: the text is not an address vector.
    """
    body = text.strip()
    if body.startswith("[") and body.endswith("]") and not _ADDR.match(body):
        body = body[1:-1]
    addrs = []
    for part in filter(None, (p.strip() for p in body.split(","))):
        m = _ADDR.match(part)
        if not m:
            raise ValueError(f"not a monitor address: {part!r}")
        addrs.append(Addr(m.group("type") or "v1", m.group("ip").strip("[]"), int(m.group("port"))))
    if not addrs:
        raise ValueError(f"empty address vector: {text!r}")
    return tuple(addrs)


def parse_monmaptool_print(text: str) -> MonMap:
    """Parse what ``monmaptool --print FILE`` prints.

    Raises:
        ValueError: the text is not a monmap print-out.
    """
    fsid = ""
    epoch = -1
    mons = []
    for line in text.splitlines():
        if line.startswith("fsid "):
            fsid = line.split()[1]
        elif line.startswith("epoch "):
            epoch = int(line.split()[1])
        else:
            m = _MON_LINE.match(line)
            if m:
                mons.append(Mon(m.group("name"), parse_addrvec(m.group("addrs"))))
    if not fsid or epoch < 0:
        raise ValueError("not a monmap print-out (no fsid/epoch line)")
    return MonMap(fsid=fsid, epoch=epoch, mons=tuple(mons))


def parse_mon_dump_json(text: str) -> MonMap:
    """Parse what ``ceph mon dump -f json`` prints.

    Raises:
        ValueError: the text is not the JSON of a monmap.
    """
    try:
        data = json.loads(text)
        mons = []
        for m in data["mons"]:
            vec = m.get("public_addrs", {}).get("addrvec")
            if vec:
                addrs = tuple(
                    Addr(a["type"], a["addr"].rsplit(":", 1)[0].strip("[]"), int(a["addr"].rsplit(":", 1)[1])) for a in vec
                )
            else:
                addrs = parse_addrvec(m["addr"])
            mons.append(Mon(m["name"], addrs))
        return MonMap(fsid=data["fsid"], epoch=int(data["epoch"]), mons=tuple(mons))
    except (KeyError, TypeError, IndexError, json.JSONDecodeError) as e:
        raise ValueError(f"not the JSON of `ceph mon dump`: {e}") from e


def wanted_addrs(ip: str) -> tuple[Addr, ...]:
    """The monitor's vector for ``ip``: msgr2 on 3300, then msgr1 on 6789."""
    cephconf.check_ipv4(ip)
    return (Addr("v2", ip, cephconf.MON_PORT_V2), Addr("v1", ip, cephconf.MON_PORT_V1))


@dataclass(frozen=True)
class Layout:
    """Where things are: names and paths the commands use (defaults: Debian's packages)."""

    mon_id: str = "a"
    cluster: str = "ceph"
    work_file: str = "/var/lib/ceph-openstack-ami/monmap.work"
    user: str = "ceph"
    group: str = "ceph"


def plan_readdress(monmap: MonMap, conf_text: str, ip: str, network: str, layout: Layout = Layout()) -> Plan:
    """Plan how to put monitor ``layout.mon_id`` on ``ip``; an empty plan when nothing changed.

    Args:
        monmap: the monitor's current map (from ``monmaptool --print`` of an extract,
            or ``ceph mon dump -f json``).
        conf_text: the current ceph.conf.
        ip: the instance's private IPv4 now.
        network: the CIDR of the interface holding ``ip`` (ceph.conf ``public_network``).
        layout: mon id, cluster name, the work file for the map copy, the daemon user.

    Raises:
        ConfigError: the map holds other monitors, or its fsid is not ceph.conf's.
    """
    want = wanted_addrs(ip)
    mon_id = layout.mon_id
    others = [m.name for m in monmap.mons if m.name != mon_id]
    if others:
        raise ConfigError(
            f"The monmap holds monitors {', '.join(others)} besides {mon_id}; refusing to re-address",
            hint="this planner handles the single-monitor cluster of one instance only",
        )
    conf_fsid = cephconf.get_option(conf_text, "fsid")
    if conf_fsid and conf_fsid.strip() != monmap.fsid:
        raise ConfigError(
            f"ceph.conf fsid {conf_fsid} is not the monitor's fsid {monmap.fsid}",
            hint="ceph.conf and /var/lib/ceph/mon do not belong to the same cluster",
        )
    current = monmap.get(mon_id)
    new_vec = "[" + ",".join(str(a) for a in want) + "]"
    old_vec = current.addrvec if current else "(absent)"

    commands: list[Command] = []
    if current is None or current.addrs != want:
        f = layout.work_file
        as_ceph = ("--setuser", layout.user, "--setgroup", layout.group)
        base = ("ceph-mon", "--cluster", layout.cluster, "-i", mon_id)
        # Both ceph-mon calls open the store (RocksDB writes new files even to read): run them as the
        # daemon's user, or the store ends up with root-owned files the monitor cannot open.
        commands.append(Command((*base, *as_ceph, "--extract-monmap", f), "copy the monitor's map into the work file"))
        if current is not None:
            commands.append(Command(("monmaptool", "--rm", mon_id, f), f"drop mon.{mon_id} at {old_vec}"))
        commands.append(Command(("monmaptool", "--addv", mon_id, new_vec, f), f"add mon.{mon_id} at {new_vec}"))
        commands.append(Command((*base, *as_ceph, "--inject-monmap", f), "commit: inject the edited map into the store"))
    new_conf = cephconf.readdress_conf(conf_text, ip, network)
    conf = new_conf if new_conf != conf_text else None

    if not commands and conf is None:
        reason = f"monitor address unchanged: mon.{mon_id} is at {new_vec}"
    elif not commands:
        reason = f"monmap already at {new_vec}; ceph.conf still pointed elsewhere"
    elif current is not None and all(a.ip == ip for a in current.addrs):
        reason = f"same IP, incomplete vector {old_vec}: re-adding mon.{mon_id} as {new_vec}"
    else:
        reason = f"monitor moves from {old_vec} to {new_vec}"
    return Plan(tuple(commands), conf, reason, old=old_vec, new=new_vec)
