"""The join section of a node's user data: join the cluster a token names, or bootstrap a single node.

The format is cloud-config, so the same user data also drives cloud-init (which ignores
a top-level key it has no module for)::

    #cloud-config
    ceph_openstack_ami:
      join:
        token: coajoin1.eyJjb250cm9sbGVyIjoi...

User data as EC2 delivers it is read: plain text, gzip-compressed, or a MIME multipart
archive whose ``text/cloud-config`` parts are read in order (the last join section wins,
as cloud-init merges later parts over earlier ones). No join section: the node bootstraps
alone, as a single-node instance does. A join section that is wrong is an error: the node
must stay out of the cluster rather than bootstrap a second one beside it.
"""

from __future__ import annotations

import email
import gzip
from dataclasses import dataclass
from typing import Any

import yaml

from ..exceptions import JoinError
from .token import Token, decode

#: The top-level cloud-config key this project reads.
SECTION = "ceph_openstack_ami"
CLOUD_CONFIG = "#cloud-config"


@dataclass(frozen=True)
class Join:
    """The node is to join the cluster ``token`` names."""

    token: Token


def render_join_user_data(token_line: str) -> str:
    """The user data that makes an instance join the cluster with ``token_line``."""
    decode(token_line)  # refuse to write user data that the node would refuse
    return CLOUD_CONFIG + "\n" + yaml.safe_dump({SECTION: {"join": {"token": token_line.strip()}}}, sort_keys=False)


def cloud_config_parts(raw: bytes) -> list[str]:
    """The cloud-config documents in user data as EC2 delivers it (see the module's docstring)."""
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise JoinError("The user data is gzip-compressed but damaged") from e
    text = raw.decode("utf-8", errors="replace")
    head = text.lstrip()[:200].lower()
    if head.startswith(CLOUD_CONFIG):
        return [text]
    if head.startswith(("content-type:", "mime-version:")):
        msg = email.message_from_string(text)
        parts = []
        for part in msg.walk():
            if part.is_multipart():
                continue
            payload = part.get_payload(decode=True)
            body = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else ""
            if part.get_content_type() == "text/cloud-config" or body.lstrip().startswith(CLOUD_CONFIG):
                parts.append(body)
        return parts
    return []


def parse_join(raw: bytes | str | None) -> Join | None:
    """The join request in a node's user data, or None when it has none (bootstrap alone).

    Raises:
        JoinError: a ``ceph_openstack_ami`` section is there but is not a valid join request.
    """
    if raw is None:
        return None
    data = raw.encode() if isinstance(raw, str) else raw
    join: Any = None
    for doc in cloud_config_parts(data):
        try:
            cfg = yaml.safe_load(doc)
        except yaml.YAMLError as e:
            if SECTION in doc:
                raise JoinError(f"The user data's {SECTION} section is not valid YAML: {e}".splitlines()[0]) from e
            continue  # not ours to judge: cloud-init reports its own
        if isinstance(cfg, dict) and SECTION in cfg:
            section = cfg[SECTION]
            if not isinstance(section, dict):
                raise JoinError(f"The user data's {SECTION} section must be a mapping", hint="see README, Cluster")
            unknown = sorted(set(section) - {"join"})
            if unknown:
                raise JoinError(f"The user data's {SECTION} section has unknown keys: {', '.join(map(str, unknown))}",
                                hint="the only key is `join` (see README, Cluster)")
            join = section.get("join", join)
    if join is None:
        return None
    if not isinstance(join, dict) or not isinstance(join.get("token"), str):
        raise JoinError(f"The user data's {SECTION}.join needs a `token:` line", hint="see README, Cluster")
    return Join(token=decode(join["token"]))
