"""The controller's pure parts: the join service's unit, when a token is live, where the records live."""

from __future__ import annotations

import fnmatch

from provision.boot.agent import agent_files
from provision.cluster import controller as ctl
from provision.cluster import token as tk
from provision.image.patterns import build_secrets
from provision.paths import UNIT_DIR
from provision.settings import Settings

S = Settings()


def _rec(i: int, **kw: object) -> tk.Record:
    base = {"id": f"{i:016x}", "secret_sha256": "0" * 64, "issued": 100, "expires": 200}
    return tk.Record(**{**base, **kw})  # type: ignore[arg-type]


def test_the_join_unit_is_installed_but_nothing_starts_it_at_boot() -> None:
    text = ctl.render_join_unit()
    assert "[Install]" not in text and "WantedBy" not in text
    assert "ExecStart=/usr/bin/python3 -m provision.cluster serve" in text
    assert agent_files(S)[f"{UNIT_DIR}/{ctl.JOIN_UNIT}"][0].decode() == text


def test_the_service_runs_while_a_token_has_not_expired_or_been_revoked() -> None:
    assert ctl.pending({"a": _rec(1)}, now=150)
    assert not ctl.pending({"a": _rec(1)}, now=200)
    assert ctl.pending({"a": _rec(1, used_at=120, used_by="x")}, now=150)  # its cephx user is still to remove
    assert not ctl.pending({"a": _rec(1, revoked=True)}, now=150)
    assert ctl.pending({"a": _rec(1, revoked=True), "b": _rec(2)}, now=150)
    assert not ctl.pending({}, now=0)


def test_the_token_records_never_go_into_an_image() -> None:
    path = ctl.store_path(S)
    assert path == "/var/lib/ceph-openstack-ami/cluster/join-tokens.json"
    for p in (path, f"{path}.lock"):
        assert any(fnmatch.fnmatchcase(p, g) for g in build_secrets(S)), p
