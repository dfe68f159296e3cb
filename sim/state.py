"""The simulation's state on the host: one JSON file in the sim's state directory."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def state_dir() -> Path:
    """Where the sim keeps its state (``$COA_SIM_DIR`` or ``.sim/`` in the checkout)."""
    return Path(os.environ.get("COA_SIM_DIR", ROOT / ".sim"))


@dataclass
class SimState:
    """What the sim created and needs to find again."""

    endpoint: str = ""
    daemon_pid: int = 0
    region: str = "us-east-1"
    profile: str = ""
    vpc_id: str = ""
    subnet_id: str = ""
    key_name: str = ""
    instance_id: str = ""
    container: str = ""
    provisioned: bool = False
    #: The current instance's user data (what RunInstances was given; a relaunch passes it on).
    user_data: str = ""
    images: dict[str, str] = field(default_factory=dict)  # ami-id -> docker image tag (the root disk)
    disks: dict[str, str] = field(default_factory=dict)  # ami-id -> volume holding the data-disk snapshot

    @classmethod
    def load(cls) -> "SimState":
        """The saved state, or an empty one."""
        path = state_dir() / "state.json"
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def save(self) -> None:
        """Write the state atomically."""
        d = state_dir()
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / "state.json.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        tmp.replace(d / "state.json")

    @property
    def key_path(self) -> Path:
        """The private key of the sim's key pair (0600)."""
        return state_dir() / f"{self.key_name or 'sim'}.pem"
