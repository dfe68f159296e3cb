"""The builder's login key: a fresh ed25519 key made locally (the private half never leaves this
machine), or the user's own key, whose public half becomes the temporary key pair."""

from __future__ import annotations

import io
import os
import shlex
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..exceptions import ConfigError
from .cleanup import Cleanup
from .plan import TAG_PREFIX


@dataclass
class Key:
    """The builder's login key: where it is on disk, its public half, and its paramiko form."""

    path: str
    public: str
    pkey: Any
    temp_dir: str | None


def generate_key(temp_dir: str) -> Key:
    """A fresh ed25519 key, made locally: the private half never leaves this machine."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    path = os.path.join(temp_dir, "builder_ed25519")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    pkey: Any = None
    try:
        pkey = paramiko.Ed25519Key.from_private_key(io.StringIO(private.decode()))
    except Exception:  # noqa: BLE001 - the file path is enough to connect
        pkey = None
    return Key(path=path, public=f"{public} {TAG_PREFIX}-builder", pkey=pkey, temp_dir=temp_dir)


def temporary_key(build_id: str, cleanup: Cleanup) -> Key:
    """A fresh key in a private temporary folder, registered for removal the moment the folder exists."""
    temp_dir = tempfile.mkdtemp(prefix=f"{TAG_PREFIX}-{build_id[:8]}-")
    cleanup.add(f"key directory {temp_dir}", lambda: shutil.rmtree(temp_dir, ignore_errors=True), f"rm -rf {shlex.quote(temp_dir)}",
                kind="key file")
    os.chmod(temp_dir, stat.S_IRWXU)
    return generate_key(temp_dir)


def load_user_key(path: str) -> Key:
    """The user's key: the public half from ``PATH.pub`` or derived from the private key.

    Raises:
        ConfigError: the key cannot be read (passphrase-protected without a ``.pub``, unknown format).
    """
    pub_path = path + ".pub"
    pkey: Any = None
    try:
        pkey = paramiko.PKey.from_path(path)
    except Exception as e:  # noqa: BLE001 - only fatal when we also lack the .pub
        if not os.path.isfile(pub_path):
            raise ConfigError(
                f"Cannot read SSH key {path!r}: {e}",
                hint=f"use an unencrypted private key, or put its public half next to it as {pub_path}",
            ) from e
    if os.path.isfile(pub_path):
        public = Path(pub_path).read_text().strip()
    else:
        public = f"{pkey.get_name()} {pkey.get_base64()}"
    return Key(path=path, public=public, pkey=pkey, temp_dir=None)
