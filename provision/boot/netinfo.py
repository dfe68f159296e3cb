"""What the instance knows of its own network without the metadata service."""

from __future__ import annotations

from ..settings import Settings
from ..target import Target


def local_ipv4(target: Target, settings: Settings) -> str | None:
    """The source address the kernel uses towards the metadata service: our own IPv4 (None without a route)."""
    host = settings.metadata_url.split("://", 1)[-1].split("/", 1)[0].split(":")[0]
    out = target.run(["ip", "-4", "-o", "route", "get", host], check=False).stdout.split()
    return out[out.index("src") + 1] if "src" in out and out.index("src") + 1 < len(out) else None
