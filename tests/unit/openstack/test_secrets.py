"""Secrets: generation, the file format, completing an older file."""

from __future__ import annotations

import dataclasses
import json
import string

import pytest

from provision.exceptions import ConfigError
from provision.openstack.secrets import Secrets, new_fernet_key, new_password

from .samples import SEC


def test_generated_secrets_are_new_alphanumeric_and_hidden_from_repr() -> None:
    a, b = Secrets.generate(), Secrets.generate()
    values = [v for k, v in dataclasses.asdict(a).items() if k != "libvirt_secret_uuid"]
    assert all(len(v) >= 32 and set(v) <= set(string.ascii_letters + string.digits) for v in values)
    assert len(set(values)) == len(values)  # no two secrets alike
    assert a.differing(b) == [f.name for f in dataclasses.fields(Secrets)]  # every value renewed
    assert not any(v in repr(a) for v in values)


def test_secrets_roundtrip_and_missing_field() -> None:
    assert Secrets.from_json(SEC.to_json()) == SEC
    data = json.loads(SEC.to_json())
    del data["rabbit"]
    with pytest.raises(ConfigError, match="rabbit"):
        Secrets.from_json(json.dumps(data))
    with pytest.raises(ConfigError):
        Secrets.from_json("not json")


def test_password_and_fernet_key_shapes() -> None:
    assert len(new_password(20)) == 20
    key = new_fernet_key()
    import base64

    assert len(base64.urlsafe_b64decode(key)) == 32


def test_secrets_from_an_older_version_are_completed_not_replaced() -> None:
    old = json.loads(SEC.to_json())
    for name in ("nova_db", "dashboard_key"):
        del old[name]
    with pytest.raises(ConfigError, match="nova_db"):
        Secrets.from_json(json.dumps(old))
    done = Secrets.from_json(json.dumps(old), complete=True)
    assert set(done.differing(SEC)) == {"nova_db", "dashboard_key"}
    assert done.nova_db and done.dashboard_key
