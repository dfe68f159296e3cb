"""The demo server's Nova key pair: the EC2 instance's own public key (from the instance metadata).

A new instance (another key, or none) replaces the key pair before it boots its demo server,
so the guest (which reads the key from its config drive, :mod:`provision.image.guest_ssh`)
lets in the owner of this instance's EC2 key pair and nobody else. :func:`plan_keypair` is
pure; :func:`ensure_keypair` and :func:`delete_keypair` call Nova.
"""

from __future__ import annotations

import urllib.parse

from .api import Cloud

#: Nova API microversion for key pairs (2.2: a ``type``, ``ssh``).
KEYPAIR_MICROVERSION = {"X-OpenStack-Nova-API-Version": "2.2"}


def key_identity(public_key: str | None) -> str | None:
    """``TYPE BASE64`` of an OpenSSH public key line (its comment and spacing do not count); None for none."""
    fields = (public_key or "").split()
    return " ".join(fields[:2]) if len(fields) >= 2 else None


def plan_keypair(existing: str | None, wanted: str | None) -> tuple[bool, bool]:
    """(delete the existing key pair, create one) for Nova's key pair ``existing`` and this instance's key ``wanted``."""
    have, want = key_identity(existing), key_identity(wanted)
    if have == want:
        return False, False
    return have is not None, want is not None


def _path(cloud: Cloud, name: str) -> str:
    return f"{cloud.nova}/os-keypairs/{urllib.parse.quote(name, safe='')}"


def current_key(cloud: Cloud, name: str) -> str | None:
    """The public key of Nova's key pair ``name``, or None when there is none."""
    if cloud.status("GET", _path(cloud, name)) == 404:
        return None
    return str(cloud.call("GET", _path(cloud, name))["keypair"]["public_key"])


def delete_keypair(cloud: Cloud, name: str) -> bool:
    """Delete key pair ``name``; True when there was one."""
    if cloud.status("GET", _path(cloud, name)) == 404:
        return False
    cloud.call("DELETE", _path(cloud, name), ok=(202, 204, 404))
    return True


def ensure_keypair(cloud: Cloud, name: str, public_key: str | None) -> tuple[str | None, list[str]]:
    """Key pair ``name`` holds ``public_key`` (none when the instance has no key); (its name or None, what was done)."""
    delete, create = plan_keypair(current_key(cloud, name), public_key)
    did: list[str] = []
    if delete:
        cloud.call("DELETE", _path(cloud, name), ok=(202, 204, 404))
        did.append(f"deleted key pair {name} (another instance's key)")
    if create:
        body = {"keypair": {"name": name, "public_key": str(public_key).strip(), "type": "ssh"}}
        cloud.call("POST", f"{cloud.nova}/os-keypairs", body, ok=(200, 201), headers=KEYPAIR_MICROVERSION)
        did.append(f"made key pair {name} from the instance's EC2 key")
    return (name if key_identity(public_key) else None), did
