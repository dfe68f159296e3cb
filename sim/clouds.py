"""``invoke sim.clouds``: the sim's cloud from this host, the ecosystem's way: a ``clouds.yaml`` entry.

``openstack --os-cloud cephdemo-sim ...``, openstacksdk and Terraform read it. The entry names
Keystone's public endpoint by the instance's public name, as the catalog does, so every endpoint
the catalog gives works from here too; the name resolves through a block the sim keeps in the
host's ``/etc/hosts`` (the sim's public IPv4 is simulated and routes nowhere, so the block maps
the name to the private address, which the bridge reaches). ``sim.down`` removes the block.

The password is the one the owner reads from the console (GetConsoleOutput, as on EC2), or,
once reboots have pushed that line out of the console's last 64 KiB, ``OS_PASSWORD`` of the
instance's ``/root/openrc`` (read as root, as ``sim.shell`` does); the CA file is the instance's
own certificate (self-signed), read from the instance. Both files are the owner's alone (0600).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from provision.openstack.identity import auth_url
from provision.openstack.ini import ADMIN_PROJECT, ADMIN_USER
from provision.settings import Settings

#: The entry's name (``openstack --os-cloud cephdemo-sim``).
CLOUD_NAME = "cephdemo-sim"
#: Where ``sim.clouds`` writes by default (``--user`` writes ``~/.config/openstack/clouds.yaml``).
DEFAULT_PATH = Path("build/clouds.yaml")
USER_PATH = Path("~/.config/openstack/clouds.yaml")
HOSTS_FILE = Path("/etc/hosts")
BEGIN, END = "# BEGIN ceph-openstack-ami sim (sim.down removes this block)", "# END ceph-openstack-ami sim"

def render_entry(settings: Settings, public_name: str, password: str, cacert: str) -> dict[str, object]:
    """The ``clouds:`` entry for the instance whose public name is ``public_name``."""
    return {
        "auth": {
            "auth_url": auth_url(settings, public_name),
            "username": ADMIN_USER,
            "password": password,
            "project_name": ADMIN_PROJECT,
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        },
        "region_name": settings.openstack.region,
        "interface": "public",
        "identity_api_version": 3,
        "cacert": cacert,
    }


def merge_clouds_yaml(existing: str, name: str, entry: dict[str, object]) -> str:
    """``existing`` clouds.yaml text with ``name`` set to ``entry`` (other clouds kept as they are)."""
    data = yaml.safe_load(existing) if existing.strip() else {}
    if not isinstance(data, dict):
        data = {}
    found = data.get("clouds")
    clouds: dict[str, object] = found if isinstance(found, dict) else {}
    clouds[name] = entry
    data["clouds"] = clouds
    return yaml.safe_dump(data, sort_keys=False)


def render_hosts(existing: str, ip: str | None, names: list[str]) -> str:
    """``existing`` /etc/hosts text with the sim's block replaced (or removed when ``ip`` is None)."""
    lines, inside, out = existing.splitlines(), False, []
    for line in lines:
        if line == BEGIN:
            inside = True
        elif line == END:
            inside = False
        elif not inside:
            out.append(line)
    if ip and names:
        out += [BEGIN, f"{ip} {' '.join(names)}", END]
    return "\n".join(out) + "\n"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600 from the first byte)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def set_hosts_block(ip: str | None, names: list[str], path: Path = HOSTS_FILE) -> bool:
    """Put (or with ``ip`` None, remove) the sim's block in ``path``; True when the file changed."""
    try:
        before = path.read_text()
    except FileNotFoundError:
        before = ""
    after = render_hosts(before, ip, names)
    if after == before or (ip is None and BEGIN not in before):
        return False
    path.write_text(after)  # in place: /etc/hosts may be a bind mount (containers), never replaced
    return True
