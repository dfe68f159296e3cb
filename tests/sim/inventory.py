"""Every secret-bearing item of an instance, read for comparison: what two instances of one public AMI
(and an instance and the AMI's own content) must never share (issue 14, "Nothing shared").

Each item is a name and a value (a key, or the sha256 of a file's content); the tests compare the
same item across two instances and fail on any equal pair.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Callable

from provision.ceph import cli
from provision.openstack.dashboard import DASHBOARD_OVERRIDES
from provision.openstack.identity import KEY_REPOSITORIES
from provision.openstack.infra import ERLANG_COOKIE, RABBIT_DEFINITIONS
from provision.openstack.secrets import Secrets, secrets_path
from provision.target import Target

#: Keyring files whose keys the image carries (the cluster's own, rotated at first boot).
KEYRING_GLOBS = ("/etc/ceph/*.keyring", "/var/lib/ceph/mon/*/keyring", "/var/lib/ceph/mgr/*/keyring", "/var/lib/ceph/osd/*/keyring")
#: Where a per-instance TLS key may be (the dashboard's and the public APIs' certificate).
TLS_KEY_GLOBS = ("/var/lib/ceph-openstack-ami/secrets/tls/*.pem",)


def _sha(data: str) -> str:
    return hashlib.sha256(data.encode()).hexdigest()


def keyring_keys(text: str) -> list[str]:
    """The ``key = ...`` values of a keyring file."""
    return re.findall(r"(?m)^\s*key\s*=\s*(\S+)\s*$", text)


def files(target: Target, globs: tuple[str, ...]) -> dict[str, str]:
    """path -> content of every regular file matching ``globs`` (none when nothing matches)."""
    script = "for f in " + " ".join(globs) + "; do [ -f \"$f\" ] && printf '%s\\0' \"$f\" && cat \"$f\" && printf '\\0'; done; true"
    out = target.run(["sh", "-c", script]).stdout.split("\0")
    return {out[i]: out[i + 1] for i in range(0, len(out) - 1, 2)}


def cephx(target: Target, settings: Any) -> dict[str, str]:
    """Every key the cluster holds (``ceph auth ls``) and ``mon.``'s, from the monitor's keyring."""
    dump = json.loads(cli.ceph(target, settings, "auth", "ls", "-f", "json").stdout)
    items = {f"cephx {e['entity']}": e["key"] for e in dump["auth_dump"]}
    mon = files(target, ("/var/lib/ceph/mon/*/keyring",))
    for text in mon.values():
        for key in keyring_keys(text):
            items["cephx mon. (monitor keyring)"] = key
    return items


def openstack(target: Target, settings: Any) -> dict[str, str]:
    """Every OpenStack secret: each field of the instance's secrets, the Erlang cookie, Fernet and credential keys, Django's key."""
    sec = Secrets.from_json(target.read(secrets_path(settings)).decode())
    items = {f"openstack {name}": getattr(sec, name) for name in Secrets.__dataclass_fields__}
    items["rabbitmq erlang cookie file"] = target.read(ERLANG_COOKIE).decode().strip()
    users = json.loads(target.read(RABBIT_DEFINITIONS).decode())["users"]
    items["rabbitmq definitions password hash"] = " ".join(sorted(u["password_hash"] for u in users))
    for repo in KEY_REPOSITORIES:
        keys = files(target, (f"{repo}/*",))
        items[f"keystone {repo}"] = _sha("".join(keys[k] for k in sorted(keys)))
    m = re.search(r"(?m)^SECRET_KEY\s*=\s*(.+)$", target.read(DASHBOARD_OVERRIDES).decode())
    items["horizon SECRET_KEY"] = m.group(1) if m else ""
    uuids = target.run("virsh -q -c qemu:///system secret-list | awk '{print $1}'").stdout.split()
    items["libvirt secret uuid"] = " ".join(sorted(uuids))
    return items


def host(target: Target) -> dict[str, str]:
    """SSH host keys, the TLS key (when there is one) and the machine-id."""
    items = {f"ssh {path}": _sha(text) for path, text in files(target, ("/etc/ssh/ssh_host_*_key",)).items()}
    for path, text in files(target, TLS_KEY_GLOBS).items():
        items[f"tls {path}"] = _sha(text)
    items["machine-id"] = target.run("cat /etc/machine-id").stdout.strip()
    return items


def inventory(target: Target, settings: Any) -> dict[str, str]:
    """Every secret-bearing item of a running instance, by name."""
    return {**cephx(target, settings), **openstack(target, settings), **host(target)}


def secret_values(target: Target, settings: Any) -> dict[str, str]:
    """The inventory's items that no log and no command line may show: ids (machine-id, the libvirt
    secret's uuid) and the public halves and hashes (SSH, TLS, Keystone key files' names) left out."""
    return {k: v for k, v in inventory(target, settings).items()
            if not k.startswith(("machine-id", "libvirt secret uuid", "openstack libvirt_secret_uuid", "ssh ", "tls ", "keystone "))}


def image_content(run: Callable[[str], str]) -> dict[str, str]:
    """The secret-bearing items an AMI's content holds, read by ``run(shell command) -> stdout`` in a container of it."""
    items: dict[str, str] = {}
    for glob in KEYRING_GLOBS:
        out = run(f"for f in {glob}; do [ -f \"$f\" ] && cat \"$f\"; done; true")
        for n, key in enumerate(keyring_keys(out)):
            items[f"image keyring {glob} #{n}"] = key
    cookie = run(f"cat {ERLANG_COOKIE} 2>/dev/null; true").strip()
    if cookie:
        items["image erlang cookie"] = cookie
    definitions = run(f"cat {RABBIT_DEFINITIONS} 2>/dev/null; true").strip()
    if definitions:
        items["image rabbitmq definitions"] = definitions
    for path in run("ls /etc/ssh/ssh_host_*_key 2>/dev/null; true").split():
        items[f"image ssh {path}"] = _sha(run(f"cat {path}"))
    return items


def shared(a: dict[str, str], b: dict[str, str]) -> list[str]:
    """The items whose value is the same in ``a`` and ``b`` (by name), and any value of ``b`` found anywhere in ``a``."""
    same = [name for name in a.keys() & b.keys() if a[name] and a[name] == b[name]]
    values = {v: n for n, v in a.items() if v}
    crossed = [f"{name} = {values[v]}" for name, v in b.items() if v in values and values[v] != name]
    return sorted(same) + sorted(crossed)
