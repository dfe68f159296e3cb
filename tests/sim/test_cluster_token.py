"""Join tokens on a real controller (issue 18, point 2): `invoke cluster.token` on the session's
instance, redeemed from the host over the sim's network with the controller's certificate pinned.

The instance is shared with the tests after this one, so everything the tokens make is undone
and checked undone at the end: tokens revoked, their cephx users removed, the join service stopped.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any, Iterator

import pytest

from provision.ceph.auth import auth_get
from provision.cluster import client, handover
from provision.cluster import token as tk
from provision.cluster.controller import JOIN_UNIT
from provision.cluster.remote import run as cluster_cmd
from provision.exceptions import JoinError
from provision.tls import cert_files, fingerprint

pytestmark = pytest.mark.docker

JOINER = "10.77.0.250"  # what the joiner says it is; the test redeems from the host


def _issue(ttl: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "invoke", "cluster.token", "--ttl", str(ttl)],
                          capture_output=True, text=True, timeout=300)


def _join_users(sim: Any) -> list[str]:
    out = sim.target.run(["ceph", "auth", "ls", "-f", "json"]).stdout
    return sorted(e["entity"] for e in json.loads(out)["auth_dump"] if e["entity"].startswith("client.join-"))


@pytest.fixture(scope="module")
def issued(sim: Any) -> Iterator[tuple[str, str]]:
    r = _issue(600)
    assert r.returncode == 0, r.stdout + r.stderr
    yield r.stdout.strip(), r.stderr
    for rec in cluster_cmd(sim.target, "list")["tokens"]:
        cluster_cmd(sim.target, "revoke", rec["id"])
    deadline = time.monotonic() + 60
    while sim.target.run(["systemctl", "is-active", JOIN_UNIT], check=False).stdout.strip() in ("active", "activating"):
        assert time.monotonic() < deadline, "the join service did not stop once no token was live"
        time.sleep(2)
    assert _join_users(sim) == []


@pytest.fixture(scope="module")
def redeemed(sim: Any, issued: tuple[str, str]) -> dict[str, Any]:
    return client.redeem(tk.decode(issued[0]), JOINER)


def test_the_token_names_the_controller_and_pins_its_certificate(sim: Any, issued: tuple[str, str]) -> None:
    line, told = issued
    token = tk.decode(line)
    assert token.controller == sim.status(checks=False)["private_ip"]
    assert token.port == sim.settings.cluster.join_port
    assert tk.normalise_fingerprint(fingerprint(sim.target, cert_files(sim.settings).cert)) == token.fingerprint
    assert f"join token {token.id} for node cephdemo-2" in told
    assert token.secret not in told


def test_the_join_service_listens_only_while_a_token_is_live_on_the_private_address(sim: Any, issued: Any) -> None:
    ip = sim.status(checks=False)["private_ip"]
    listening = sim.target.run(["ss", "-Hltn", f"sport = :{sim.settings.cluster.join_port}"]).stdout.split()
    assert f"{ip}:{sim.settings.cluster.join_port}" in listening
    assert sim.target.run(["systemctl", "is-enabled", JOIN_UNIT], check=False).stdout.strip() in ("static", "disabled")


def test_a_valid_token_hands_over_only_what_a_compute_node_needs(sim: Any, issued: Any, redeemed: dict[str, Any]) -> None:
    h = handover.from_dict(redeemed)
    fsid = sim.target.run(["ceph", "fsid"]).stdout.strip()
    assert (h.fsid, h.node_name, h.mon_ips) == (fsid, "cephdemo-2", (sim.status(checks=False)["private_ip"],))
    assert set(h.openstack) == set(handover.COMPUTE_SECRETS)
    assert h.runs_monitor and "[mon.]" in (h.mon_keyring or "")


def test_the_tokens_cephx_user_bootstraps_osds_and_nothing_more(sim: Any, issued: Any, redeemed: dict[str, Any]) -> None:
    h = handover.from_dict(redeemed)
    entry = auth_get(sim.target, sim.settings, h.osd_entity)
    assert entry is not None and entry["caps"] == {"mon": "allow profile bootstrap-osd"}
    key = ["--name", h.osd_entity, "--key", h.osd_key]
    denied = sim.target.run(["ceph", *key, "--connect-timeout", "10", "auth", "get", "client.admin"], check=False)
    assert not denied.ok and ("EACCES" in denied.stderr or "denied" in denied.stderr.lower()), denied.stderr


def test_a_used_token_is_refused_and_the_refusal_is_in_the_journal(sim: Any, issued: Any, redeemed: Any) -> None:
    token = tk.decode(issued[0])
    with pytest.raises(JoinError, match=f"already used by {JOINER}"):
        client.redeem(token, "10.77.0.251")
    journal = sim.target.run(["journalctl", "-u", JOIN_UNIT, "-o", "cat", "--no-pager"]).stdout
    assert f"join token {token.id} spent by {JOINER}" in journal
    assert "already used" in journal
    assert token.secret not in journal


def test_an_expired_token_is_refused(sim: Any, issued: Any) -> None:
    r = _issue(1)
    assert r.returncode == 0, r.stderr
    time.sleep(2)
    with pytest.raises(JoinError, match="expired"):
        client.redeem(tk.decode(r.stdout.strip()), JOINER)
