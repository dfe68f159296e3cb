"""The builder's login key: a user's own key becomes the temporary key pair."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from provision.ec2.plan import BuilderHost

from .helpers import (
    options,
    run_build,
)


def test_a_users_key_file_becomes_the_key_pair(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = tmp_path / "id_ed25519"
    key.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
    )
    key.chmod(0o600)
    seen: list[tuple[str, list[str]]] = []

    def provision(host: BuilderHost) -> None:
        seen.append((host.key_path, [k["KeyType"] for k in ec2.describe_key_pairs()["KeyPairs"]]))

    run_build(options(tmp_path, key_file=str(key)), provision)
    assert seen == [(str(key), ["ed25519"])]
    assert key.exists(), "the user's own key is never removed"
    assert ec2.describe_key_pairs()["KeyPairs"] == []
