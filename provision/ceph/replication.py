"""How many copies the pools keep, and on what: one host keeps one copy; three hosts or more keep three on three hosts.

A single node keeps today's settings (``conf.SINGLE_HOST_SETTINGS``: size 1, failure domain
OSD). Once ``cluster.replicated_hosts`` hosts carry OSDs, every pool is moved to a CRUSH rule
whose failure domain is the host and keeps ``replicated_size`` copies, ``replicated_min_size``
of which must be up to write. Ceph moves the data itself (backfill); this module only says
what to ask for, from what the cluster reports (``ceph osd tree``, ``ceph osd pool ls detail``,
``ceph osd crush rule dump``), so the plan is a table tested offline and re-running it once
it is done plans nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..settings import Settings

#: The CRUSH rule the pools use once they span hosts.
HOST_RULE = "replicated_host"


@dataclass(frozen=True)
class Pool:
    """What a pool is now: its name, copies, copies needed to write, and CRUSH rule id."""

    name: str
    size: int
    min_size: int
    crush_rule: int


@dataclass(frozen=True)
class Plan:
    """The ``ceph`` commands to run, in order, and why (one line for the log)."""

    commands: tuple[tuple[str, ...], ...]
    reason: str


def osd_hosts(tree: dict[str, Any]) -> list[str]:
    """The hosts that hold at least one OSD, from ``ceph osd tree -f json``."""
    return sorted(n["name"] for n in tree.get("nodes", []) if n.get("type") == "host" and n.get("children"))


def pools(detail: Sequence[dict[str, Any]]) -> list[Pool]:
    """The pools from ``ceph osd pool ls detail -f json``."""
    return [Pool(p["pool_name"], int(p["size"]), int(p["min_size"]), int(p["crush_rule"])) for p in detail]


def rule_ids(dump: Sequence[dict[str, Any]]) -> dict[str, int]:
    """CRUSH rule name -> id, from ``ceph osd crush rule dump -f json``."""
    return {r["rule_name"]: int(r["rule_id"]) for r in dump}


def plan(settings: Settings, hosts: Sequence[str], current: Sequence[Pool], rules: dict[str, int]) -> Plan:
    """What to change so that every pool has the replication ``hosts`` allow.

    Below ``cluster.replicated_hosts`` OSD hosts nothing changes (a single node keeps one
    copy by design). From there on: the host rule is made if missing, then each pool that
    differs is moved to it and given its size and min_size, in that order.
    """
    c = settings.cluster
    n = len(hosts)
    if n < c.replicated_hosts:
        return Plan((), f"{n} OSD host(s), fewer than {c.replicated_hosts}: the pools keep their settings")
    cmds: list[tuple[str, ...]] = []
    if HOST_RULE not in rules:
        cmds.append(("osd", "crush", "rule", "create-replicated", HOST_RULE, "default", "host"))
    rule_id = rules.get(HOST_RULE)
    moved = []
    for p in sorted(current, key=lambda p: p.name):
        before = len(cmds)
        if rule_id is None or p.crush_rule != rule_id:
            cmds.append(("osd", "pool", "set", p.name, "crush_rule", HOST_RULE))
        if p.size != c.replicated_size:
            cmds.append(("osd", "pool", "set", p.name, "size", str(c.replicated_size)))
        if p.min_size != c.replicated_min_size:
            cmds.append(("osd", "pool", "set", p.name, "min_size", str(c.replicated_min_size)))
        if len(cmds) > before:
            moved.append(p.name)
    if not cmds:
        return Plan((), f"{n} OSD hosts: every pool already keeps {c.replicated_size} copies on distinct hosts")
    what = ", ".join(moved) if moved else "no pool yet"
    return Plan(
        tuple(cmds),
        f"{n} OSD hosts: {what} to {c.replicated_size} copies (min_size {c.replicated_min_size}) on distinct hosts",
    )
