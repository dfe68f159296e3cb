"""Where the instance is: its private IPv4 (internal and admin endpoints) and its public name.

At boot they come from the instance metadata; while provisioning, from the address the host
was reached at and the metadata the boot agent saved.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from typing import Any

from ..paths import LAST_METADATA_NAME
from ..settings import Settings
from ..target import Target


@dataclass(frozen=True)
class Addresses:
    """The instance's private IPv4 (internal/admin endpoints) and public host name (public endpoints)."""

    private_ip: str
    public_host: str

    @classmethod
    def from_info(cls, info: Any) -> "Addresses":
        """From an :class:`~provision.metadata.InstanceInfo`; the private IPv4 stands in for a missing public name."""
        private = info.local_ipv4
        return cls(private, getattr(info, "public_hostname", None) or private)


def saved_addresses(target: Target, settings: Settings) -> Addresses | None:
    """The addresses in the metadata the boot agent saved last; None when it never saved any."""
    try:
        data = json.loads(target.read(posixpath.join(settings.state_dir, LAST_METADATA_NAME)).decode())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    private = data.get("local_ipv4") if isinstance(data, dict) else None
    return Addresses(private, data.get("public_hostname") or private) if private else None


def provisioning_addresses(target: Target, settings: Settings, ip: str) -> Addresses:
    """The instance's addresses while provisioning: ``ip`` and the public name from the metadata the agent saved."""
    saved = saved_addresses(target, settings)
    return saved if saved is not None and saved.private_ip == ip else Addresses(ip, ip)
