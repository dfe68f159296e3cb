"""Is this a new instance? Decided locally (the disk's machine-id, systemd's first-boot semantics) and by
the metadata's instance-id, so a metadata outage at the first boot of an image still counts as new.

The image's scrub empties ``/etc/machine-id``; systemd makes a new one at the first boot of every
instance of the image. A per-instance job records the machine-id and the instance-id it ran for;
it runs again when either differs (or when it never ran). Pure functions here, plus the two reads
(the machine-id file, the marker file) the runner needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..instance import InstanceInfo

MACHINE_ID_PATH = "/etc/machine-id"
#: The instance-id recorded when a job ran without the metadata service (it is not known yet).
UNKNOWN_INSTANCE = "unknown"


@dataclass(frozen=True)
class Marker:
    """What a per-instance job recorded when it last completed."""

    instance_id: str
    machine_id: str | None  # None: written by an older agent, which recorded only the instance-id

    def text(self) -> str:
        """The marker file's content."""
        return json.dumps({"instance_id": self.instance_id, "machine_id": self.machine_id}) + "\n"


def parse_marker(text: str) -> Marker:
    """A marker from its file: JSON, or the bare instance-id an older agent wrote."""
    text = text.strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return Marker(text, None)
    if not isinstance(data, dict):
        return Marker(text, None)
    return Marker(str(data.get("instance_id") or UNKNOWN_INSTANCE), data.get("machine_id") or None)


@dataclass(frozen=True)
class Decision:
    """Whether a per-instance job is due; ``due`` None means it cannot be told (the job is skipped)."""

    due: bool | None
    why: str


def decide(marker: Marker | None, machine_id: str, instance_id: str | None) -> Decision:
    """Whether a per-instance job must run, and which signal said so.

    Args:
        marker: what the job recorded last time (None: it never completed on this disk).
        machine_id: this boot's ``/etc/machine-id``.
        instance_id: the metadata's instance-id, or None when the metadata service did not answer.
    """
    if marker is None:
        return Decision(True, "never done on this disk")
    if marker.machine_id and marker.machine_id != machine_id:
        return Decision(True, f"machine-id {marker.machine_id[:8]}... -> {machine_id[:8]}...: first boot of this disk as a new machine")
    if instance_id is not None and marker.instance_id not in (instance_id, UNKNOWN_INSTANCE):
        return Decision(True, f"instance-id {marker.instance_id} -> {instance_id}")
    if instance_id is None and marker.machine_id is None:
        return Decision(None, "metadata unavailable and no machine-id recorded: cannot tell whether this is a new instance")
    done_for = instance_id or marker.instance_id
    return Decision(False, f"already done for instance {done_for} (machine-id unchanged)")


def local_info(machine_id: str, local_ipv4: str, region: str) -> InstanceInfo:
    """What can be known of this instance without the metadata service: its own address, nothing public."""
    return InstanceInfo(
        instance_id=UNKNOWN_INSTANCE,
        ami_id=UNKNOWN_INSTANCE,
        instance_type=UNKNOWN_INSTANCE,
        local_ipv4=local_ipv4,
        local_hostname="ip-" + local_ipv4.replace(".", "-"),
        availability_zone="",
        region=region,
    )


def read_machine_id(path: str = MACHINE_ID_PATH) -> str:
    """This boot's machine-id ('' when the file is missing or empty, which systemd never leaves at run time)."""
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""


def cache_text(info: InstanceInfo, machine_id: str) -> str:
    """The last-known metadata file: the instance's facts and the machine-id they were read on."""
    return json.dumps({**info.as_dict(), "machine_id": machine_id})


def parse_cache(text: str) -> tuple[InstanceInfo, str | None]:
    """The last-known metadata and the machine-id it was read on (None in an older agent's file)."""
    data = json.loads(text)
    fields = {f for f in InstanceInfo.__dataclass_fields__}
    return InstanceInfo(**{k: v for k, v in data.items() if k in fields}), data.get("machine_id")
