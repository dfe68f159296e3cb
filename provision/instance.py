"""What this instance is: the facts read once from the metadata service, as plain data (standard library only)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

_AZ_REGION = re.compile(r"^([a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d+)")


def region_from_az(availability_zone: str) -> str | None:
    """Derive the region from an availability zone name, or None when it does not look like one.

    ``us-east-1a`` -> ``us-east-1``; Local Zones (``us-west-2-lax-1a``) and GovCloud
    (``us-gov-west-1a``) keep their parent region.
    """
    m = _AZ_REGION.match(availability_zone.strip())
    return m.group(1) if m else None


@dataclass(frozen=True)
class InstanceInfo:
    """What this instance is, read once from the metadata service.

    ``public_ipv4``, ``public_hostname`` and ``openssh_key`` are None when EC2 has none
    (no public address, a VPC without public DNS, launched without a key pair).
    """

    instance_id: str
    ami_id: str
    instance_type: str
    local_ipv4: str
    local_hostname: str
    availability_zone: str
    region: str
    public_ipv4: str | None = None
    public_hostname: str | None = None
    openssh_key: str | None = None
    mac: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The fields as plain data (for JSON)."""
        return dataclasses.asdict(self)
