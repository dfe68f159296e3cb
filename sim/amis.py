"""The sim's AMIs outlive its daemon, as AMIs outlive everything on EC2 until deregistered.

moto holds EC2 in memory: when the sim daemon ends (``sim.down``, a crash, a host reboot)
every registration is gone. The daemon therefore writes the registrations of this account's
images to :func:`registry_path` whenever they change (:class:`RegistryKeeper`), and a new
daemon gives that file to moto as ``MOTO_AMIS_PATH`` (moto's own way to start with given
AMIs), so each AMI comes back with its id, name, description, tags and public launch
permission. The content (the Docker image that is the root disk, the volume that is the
data-disk snapshot) is the sim's own (:class:`sim.state.SimState`'s ``images``/``disks``).

What moto's loader cannot carry: launch permissions for single accounts (only public or not),
the snapshot ids (moto makes a new auto-snapshot per AMI at load), and region (a loaded AMI
is in every region's backend). ``ImageOwnerAlias`` reads ``amazon`` after a reload (moto
marks every loaded AMI so).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from provision.ec2.plan import BUILD_ID_TAG

from .state import state_dir

#: Seconds between the daemon's looks at moto's registrations.
KEEP_EVERY_S = 2.0


def registry_path() -> Path:
    """Where the daemon keeps the registrations (in the sim's state directory; ``sim.down --all`` removes it)."""
    return state_dir() / "moto-amis.json"


def moto_record(image: Mapping[str, Any]) -> dict[str, Any]:
    """One ``describe_images`` entry as moto's AMI loader takes it (the keyword arguments of its ``Ami``)."""
    record: dict[str, Any] = {
        "ami_id": image["ImageId"],
        "name": image.get("Name"),
        "description": image.get("Description"),
        "owner_id": image.get("OwnerId"),
        "public": bool(image.get("Public")),
        "state": "available",
        "architecture": image.get("Architecture"),
        "virtualization_type": image.get("VirtualizationType"),
        "hypervisor": image.get("Hypervisor"),
        "image_type": image.get("ImageType", "machine"),
        "image_location": image.get("ImageLocation"),
        "root_device_type": image.get("RootDeviceType", "ebs"),
        "root_device_name": image.get("RootDeviceName", "/dev/sda1"),
        "sriov": image.get("SriovNetSupport", "simple"),
        "creation_date": image.get("CreationDate"),
        "tags": {t["Key"]: t["Value"] for t in image.get("Tags") or []},
    }
    if image.get("BootMode"):
        record["boot_mode"] = image["BootMode"]
    if image.get("Platform"):
        record["platform"] = image["Platform"]
    return {k: v for k, v in record.items() if v is not None}


def own_records(ec2: Any) -> list[dict[str, Any]]:
    """moto's registrations of this account's available images, as loader records (sorted by id)."""
    images = ec2.describe_images(Owners=["self"]).get("Images", [])
    return sorted((moto_record(i) for i in images if i.get("State", "available") == "available"), key=lambda r: r["ami_id"])


def read(path: Path) -> list[dict[str, Any]]:
    """The records in ``path`` (none when it does not exist)."""
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    return list(data) if isinstance(data, list) else []


def write(path: Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Write ``records`` atomically (a reader never sees half a file); remove the file when there are none."""
    records = list(records)
    if not records:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def built_by_a_build(record: Mapping[str, Any]) -> bool:
    """True for an image ``build.ami`` made (it carries the build's id tag), as against the sim's relaunch images."""
    return BUILD_ID_TAG in (record.get("tags") or {})


def keep_only(path: Path, amis: Iterable[str]) -> list[dict[str, Any]]:
    """Drop from ``path`` every record but those of ``amis``; the records kept."""
    wanted = set(amis)
    kept = [r for r in read(path) if r.get("ami_id") in wanted]
    write(path, kept)
    return kept


class RegistryKeeper:
    """In the daemon: write moto's registrations to ``path`` whenever they change, and once more at stop."""

    def __init__(self, records: Callable[[], list[dict[str, Any]]], path: Path, every_s: float = KEEP_EVERY_S) -> None:
        self.records, self.path, self.every_s = records, path, every_s
        self._last: list[dict[str, Any]] | None = read(path)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ami-registry", daemon=True)

    def keep_once(self) -> None:
        """Look once; write when something changed (a failed look changes nothing)."""
        try:
            now = self.records()
        except Exception:
            return
        if now != self._last:
            write(self.path, now)
            self._last = now

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.keep_once()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop looking, after a last look."""
        self._stop.set()
        self._thread.join(timeout=self.every_s + 5)
        self.keep_once()


def moto_load_file(records: list[dict[str, Any]], moto_defaults: Path, out: Path) -> Path:
    """Write the file moto loads at start: its own default AMIs followed by ``records``; its path."""
    defaults = json.loads(moto_defaults.read_text()) if moto_defaults.exists() else []
    write(out, [*defaults, *records])
    return out
