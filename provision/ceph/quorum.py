"""A monitor joins, or replaces itself in, a quorum of several: through the quorum, never by injecting a map.

The single node re-addresses its lone monitor by rewriting and injecting the monmap
(``monmap.py``): with one monitor there is no quorum to ask. With several, a monitor
whose address changed (its node was relaunched) is replaced the way Ceph documents for
a running cluster ("Adding/Removing Monitors", manual method):

1. ``ceph mon rm NAME`` through the surviving quorum (only when the map still holds NAME
   at another address: its old address died with the old instance);
2. the old store moved aside (kept, never deleted: it is the only copy of what it held);
3. ``ceph mon getmap`` from the quorum, ``ceph-mon --mkfs -i NAME --monmap ... --keyring ...``
   with the ``mon.`` keyring;
4. the monitor started with its ``public_addr``: it asks the quorum to add it.

The quorum must keep a majority without this node's monitor, else ``ceph mon rm`` cannot
be committed: with two monitors, one of them down, nothing can change (Ceph's rule, not
ours), and the plan says so instead of trying. Pure: facts in, commands out.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Sequence

from ..exceptions import CephNotHealthy
from .monmap import Command, MonMap, wanted_addrs


@dataclass(frozen=True)
class MonLayout:
    """Where a member's monitor keeps its store and the files its creation needs."""

    cluster: str = "ceph"
    data_root: str = "/var/lib/ceph/mon"
    work_dir: str = "/run/ceph-openstack-ami"

    def data_dir(self, name: str) -> str:
        """The monitor's store (``/var/lib/ceph/mon/ceph-NAME``)."""
        return posixpath.join(self.data_root, f"{self.cluster}-{name}")


@dataclass(frozen=True)
class MemberPlan:
    """What to run for this node's monitor, and the one line that says why."""

    commands: tuple[Command, ...]
    reason: str
    start: bool


def plan_member_monitor(
    name: str, ip: str, monmap: MonMap, quorum: Sequence[str], has_store: bool, stamp: str, layout: MonLayout = MonLayout()
) -> MemberPlan:
    """Plan this node's monitor ``name`` at ``ip`` in a cluster whose quorum answered.

    Args:
        name: the monitor's name (the node's name).
        ip: this node's private IPv4.
        monmap: the quorum's current map (``ceph mon dump -f json``).
        quorum: the monitors in quorum now (``ceph quorum_status``'s ``quorum_names``).
        has_store: whether this disk holds a store for ``name``.
        stamp: a suffix for a store moved aside (the old instance's id).
        layout: where things are.

    Raises:
        CephNotHealthy: replacing the monitor would need a majority the quorum does not have.
    """
    want = wanted_addrs(ip)
    cur = monmap.get(name)
    if cur is not None and cur.addrs == want and has_store:
        return MemberPlan((), f"mon.{name} is in the map at {ip} with its store: starting it", True)
    cmds: list[Command] = []
    data = layout.data_dir(name)
    if cur is not None:
        others = [m.name for m in monmap.mons if m.name != name]
        if 2 * len(quorum) <= len(monmap.mons):
            raise CephNotHealthy(
                f"Cannot replace mon.{name}: {len(quorum)} of the map's {len(monmap.mons)} monitors are in quorum, "
                "not a majority",
                hint=f"start the other nodes ({', '.join(others)}) first; with two monitors, one down, Ceph can change nothing",
            )
        old = cur.addrvec
        cmds.append(Command(("ceph", "mon", "rm", name), f"mon.{name}'s address {old} died with its old instance"))
    if has_store:
        cmds.append(Command(("mv", data, f"{data}.old-{stamp}"), "keep the old store aside; a new one is made below"))
    monmap_file = posixpath.join(layout.work_dir, "member-monmap")
    keyring = posixpath.join(layout.work_dir, "mon.keyring")
    cmds += [
        Command(("ceph", "mon", "getmap", "-o", monmap_file), "the quorum's current map"),
        Command(("ceph-mon", "--cluster", layout.cluster, "--mkfs", "-i", name, "--monmap", monmap_file,
                 "--keyring", keyring, "--setuser", "ceph", "--setgroup", "ceph"),
                f"a new store for mon.{name}"),
    ]
    why = "replacing" if cur is not None else "adding"
    return MemberPlan(tuple(cmds), f"{why} mon.{name} at {ip} through the quorum ({', '.join(quorum)})", True)
