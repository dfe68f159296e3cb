"""Join tokens: issue, encode/decode, and the controller's rules for redeeming them."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest

import provision
from provision.cluster import token as tk
from provision.exceptions import JoinError

FP = "AB:" * 31 + "AB"
NOW = 1_800_000_000


def _issue(now: int = NOW, ttl: int = 600, rid: bytes = b"\x01" * 8) -> tuple[tk.Token, tk.Record]:
    return tk.issue(controller="10.0.0.5", port=13443, fingerprint=FP, now=now, ttl_s=ttl,
                    random_id=rid, random_secret=b"\x02" * 32)


def test_a_token_round_trips_and_the_record_holds_no_secret() -> None:
    token, rec = _issue()
    line = tk.encode(token)
    assert line.startswith("coajoin1.") and "\n" not in line
    assert tk.decode("  " + line + "\n") == token
    assert token.fingerprint == "ab" * 32
    assert token.expires == NOW + 600 == rec.expires
    assert token.secret not in tk.dump_records({rec.id: rec})
    assert tk.load_records(tk.dump_records({rec.id: rec})) == {rec.id: rec}


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("hello", "does not start with"),
        ("coajoin1.!!!!", "damaged"),
        ("coajoin1." + base64.urlsafe_b64encode(b"[1]").decode(), "not an object"),
        ("coajoin1." + base64.urlsafe_b64encode(json.dumps({"controller": "10.0.0.5"}).encode()).decode(), "lacks"),
    ],
)
def test_a_malformed_token_is_one_clear_error(line: str, words: str) -> None:
    with pytest.raises(JoinError, match=words):
        tk.decode(line)


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("controller", "fe80::1", "not an IPv4"),
        ("controller", "cephdemo", "not an IPv4"),
        ("port", 0, "not a TCP port"),
        ("fingerprint", "abc", "fingerprint"),
        ("id", "zz", "id"),
        ("secret", "short", "too short"),
    ],
)
def test_a_token_with_a_bad_field_is_refused(field: str, value: object, words: str) -> None:
    token, _ = _issue()
    data = json.loads(base64.urlsafe_b64decode(tk.encode(token)[len(tk.PREFIX):] + "=="))
    data[field] = value
    with pytest.raises(JoinError, match=words):
        tk.decode(tk.PREFIX + base64.urlsafe_b64encode(json.dumps(data).encode()).decode())


def test_redeeming_spends_the_token_once() -> None:
    token, rec = _issue()
    used = tk.redeem({rec.id: rec}, token.id, token.secret, now=NOW + 1, joiner="10.0.0.6")
    assert (used.used_at, used.used_by) == (NOW + 1, "10.0.0.6")
    with pytest.raises(JoinError, match="already used by 10.0.0.6"):
        tk.redeem({rec.id: used}, token.id, token.secret, now=NOW + 2, joiner="10.0.0.7")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ("unknown", "unknown to this controller"),
        ("secret", "secret does not match"),
        ("expired", "expired 5 s ago"),
        ("revoked", "revoked"),
    ],
)
def test_a_token_that_must_not_join_is_refused_with_its_reason(change: str, words: str) -> None:
    token, rec = _issue()
    records = {rec.id: rec}
    tid, secret, now = token.id, token.secret, NOW + 10
    if change == "unknown":
        tid = "f" * 16
    elif change == "secret":
        secret = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    elif change == "expired":
        now = NOW + 605
    elif change == "revoked":
        records = tk.revoke(records, tid)
    with pytest.raises(JoinError, match=words):
        tk.redeem(records, tid, secret, now=now, joiner="10.0.0.6")


def test_revoking_marks_used_and_unused_tokens_and_an_unknown_id_changes_nothing() -> None:
    token, rec = _issue()
    used = tk.redeem({rec.id: rec}, token.id, token.secret, now=NOW, joiner="x")
    assert tk.revoke({rec.id: used}, rec.id)[rec.id].revoked
    assert tk.revoke({rec.id: used}, rec.id)[rec.id].used_by == "x"
    assert tk.revoke({rec.id: rec}, "0" * 16) == {rec.id: rec}


def test_prune_drops_only_what_ended_more_than_a_week_ago() -> None:
    _, live = _issue(now=NOW, ttl=600, rid=b"\x01" * 8)
    _, old = _issue(now=NOW - 8 * 86400, ttl=600, rid=b"\x02" * 8)
    _, recent = _issue(now=NOW - 86400, ttl=600, rid=b"\x03" * 8)
    kept = tk.prune({r.id: r for r in (live, old, recent)}, now=NOW)
    assert set(kept) == {live.id, recent.id}


def test_issue_refuses_weak_randomness_and_a_bad_lifetime() -> None:
    with pytest.raises(JoinError, match="32 random bytes"):
        tk.issue(controller="10.0.0.5", port=1, fingerprint=FP, now=NOW, ttl_s=1, random_id=b"\x01" * 8,
                 random_secret=b"\x02" * 8)
    with pytest.raises(JoinError, match="lifetime"):
        _issue(ttl=0)


def test_a_damaged_store_is_a_clear_error_and_an_empty_one_is_empty() -> None:
    assert tk.load_records("") == {}
    with pytest.raises(JoinError, match="damaged"):
        tk.load_records('{"x": {"nope": 1}}')


def test_the_joiners_and_controllers_modules_run_on_a_bare_python() -> None:
    """On the instance they run under the distribution's python3: the standard library only, except
    userdata.py, which reads cloud-config with PyYAML (python3-yaml, which cloud-init itself needs)."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(provision.__file__)))
    check = (
        "import sys, provision.cluster.token, provision.cluster.service, provision.cluster.client, provision.cluster.handover, provision.cluster.role\n"
        "import provision.ceph.replication\n"
        "extra = sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names) - {'provision', '__main__'})\n"
        "assert not extra, extra\n"
    )
    r = subprocess.run([sys.executable, "-S", "-c", check], capture_output=True, text=True, timeout=30,
                       env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": repo})
    assert r.returncode == 0, r.stderr
