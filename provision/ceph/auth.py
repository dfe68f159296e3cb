"""cephx: the cluster's users and their caps, and the helpers that make, read and re-key them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..exceptions import CommandFailed, ProvisionError
from ..settings import Settings
from ..target import Target
from .cli import CEPH_USER, ceph


@dataclass(frozen=True)
class Client:
    """A cephx client user for an OpenStack service, its caps and the group that reads its keyring."""

    entity: str
    caps: tuple[tuple[str, str], ...]
    group: str


def clients(settings: Settings) -> tuple[Client, ...]:
    """The cephx users Cinder and Glance use (``client.volumes``, ``client.images``) and ceph-crash's."""
    vol, img = settings.volume_pool, settings.image_pool
    return (
        Client(
            f"client.{vol}",
            (("mon", "profile rbd"), ("osd", f"profile rbd pool={vol}, profile rbd-read-only pool={img}")),
            "cinder",
        ),
        Client(f"client.{img}", (("mon", "profile rbd"), ("osd", f"profile rbd pool={img}")), "glance"),
        # ceph-crash drops to the ceph user and posts crash reports as client.crash.
        Client("client.crash", (("mon", "profile crash"), ("mgr", "profile crash")), CEPH_USER),
    )


MGR_CAPS = (("mon", "allow profile mgr"), ("osd", "allow *"), ("mds", "allow *"))


ADMIN_CAPS = (("mon", "allow *"), ("osd", "allow *"), ("mds", "allow *"), ("mgr", "allow *"))


def gen_key(target: Target) -> str:
    """A fresh cephx secret from ``ceph-authtool --gen-print-key`` (never leaves the target's output)."""
    return target.run(["ceph-authtool", "--gen-print-key"]).stdout.strip()


def auth_get(target: Target, settings: Settings, entity: str) -> dict[str, Any] | None:
    """``ceph auth get ENTITY -f json`` as ``{"entity", "key", "caps"}``, or None when absent."""
    r = ceph(target, settings, "auth", "get", entity, "-f", "json", check=False)
    if not r.ok:
        if "ENOENT" in r.stderr or "failed to find" in r.stderr or r.exit_code == 2:
            return None
        raise CommandFailed(target.name, r.command, r.exit_code, r.stdout, r.stderr)
    data = json.loads(r.stdout)
    return data[0] if isinstance(data, list) and data else None


def ensure_auth(target: Target, settings: Settings, entity: str, caps: tuple[tuple[str, str], ...]) -> tuple[str, str]:
    """Make ``entity`` exist with exactly ``caps``; return (what was done or "", its keyring text)."""
    want = dict(caps)
    flat = [x for kv in caps for x in kv]
    cur = auth_get(target, settings, entity)
    done = ""
    if cur is None:
        ceph(target, settings, "auth", "get-or-create", entity, *flat)
        done = f"created {entity}"
    elif cur.get("caps", {}) != want:
        ceph(target, settings, "auth", "caps", entity, *flat)
        done = f"set caps of {entity}"
    keyring = ceph(target, settings, "auth", "get", entity).stdout
    return done, keyring


def replace_key(keyring_text: str, key: str) -> str:
    """Return a keyring text with every ``key = ...`` line carrying ``key`` (caps and layout kept)."""
    new, n = re.subn(r"(?m)^([ \t]*key[ \t]*=[ \t]*)\S+[ \t]*$", lambda m: m.group(1) + key, keyring_text)
    if n == 0:
        raise ProvisionError("The keyring has no `key =` line")
    return new if new.endswith("\n") else new + "\n"  # Ceph refuses a keyring without the final newline
