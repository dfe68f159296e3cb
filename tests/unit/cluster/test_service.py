"""The join service and its client, for real over loopback TLS: a valid token is handed over once,
every other token gets its reason, and a certificate other than the pinned one gets no secret."""

from __future__ import annotations

import hashlib
import os
import shutil
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from provision.cluster import client, service
from provision.cluster import token as tk
from provision.exceptions import JoinError

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command line")


def _cert(tmp: Path, name: str) -> tuple[str, str, str]:
    key, cert = tmp / f"{name}.key", tmp / f"{name}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", f"/CN={name}"],
                   check=True, capture_output=True)
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    return str(cert), str(key), hashlib.sha256(der).hexdigest()


class Controller:
    def __init__(self, tmp: Path) -> None:
        self.cert, self.key, self.fp = _cert(tmp, "controller")
        self.store = service.FileStore(str(tmp / "join-tokens.json"))
        self.log: list[str] = []
        self.handed: list[tuple[str, str]] = []
        self.now = 1_800_000_000
        self.fail = False

        def handover(rec: tk.Record, joiner: str) -> dict[str, Any]:
            if self.fail:
                raise RuntimeError("monitor map unavailable")
            self.handed.append((rec.id, joiner))
            return {"fsid": "f" * 8, "for": joiner}

        self.server = service.make_server("127.0.0.1", 0, self.cert, self.key, self.store, handover,
                                          self.log.append, clock=lambda: self.now)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def issue(self, ttl: int = 600, fp: str | None = None) -> tk.Token:
        token, rec = tk.issue(controller="127.0.0.1", port=self.port, fingerprint=fp or self.fp, now=self.now,
                              ttl_s=ttl, random_id=os.urandom(8), random_secret=os.urandom(32))
        records = self.store.load()
        records[rec.id] = rec
        self.store.save(records)
        return token


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[Controller]:
    c = Controller(tmp_path)
    yield c
    c.server.shutdown()
    c.server.server_close()


def test_a_valid_token_is_handed_over_once_and_then_refused(controller: Controller) -> None:
    token = controller.issue()
    assert client.redeem(token, "10.0.0.6") == {"fsid": "ffffffff", "for": "10.0.0.6"}
    assert controller.handed == [(token.id, "10.0.0.6")]
    with pytest.raises(JoinError, match=r"refused to join this node: Join token \w+ was already used by 10.0.0.6"):
        client.redeem(token, "10.0.0.7")
    assert controller.handed == [(token.id, "10.0.0.6")]
    assert oct(os.stat(controller.store.path).st_mode & 0o777) == "0o600"
    text = Path(controller.store.path).read_text()
    assert token.secret not in text and token.id in text
    assert any("spent by 10.0.0.6" in line for line in controller.log)
    assert not any(token.secret in line for line in controller.log)


def test_an_expired_or_revoked_token_gets_its_reason_and_nothing(controller: Controller) -> None:
    expired = controller.issue(ttl=10)
    controller.now += 11
    with pytest.raises(JoinError, match="expired 1 s ago"):
        client.redeem(expired, "10.0.0.6")
    revoked = controller.issue()
    controller.store.save(tk.revoke(controller.store.load(), revoked.id))
    with pytest.raises(JoinError, match="was revoked"):
        client.redeem(revoked, "10.0.0.6")
    assert controller.handed == []


def test_a_wrong_secret_is_refused(controller: Controller) -> None:
    token = controller.issue()
    forged = tk.Token(**{**token.__dict__, "secret": tk.encode(token)[-43:]})
    with pytest.raises(JoinError, match="secret does not match"):
        client.redeem(forged, "10.0.0.6")
    assert client.redeem(token, "10.0.0.6")["for"] == "10.0.0.6"  # the real one still works


def test_a_certificate_other_than_the_pinned_one_gets_no_secret(controller: Controller, tmp_path: Path) -> None:
    _, _, other_fp = _cert(tmp_path, "impostor")
    token = controller.issue(fp=other_fp)
    with pytest.raises(JoinError, match="not the token's"):
        client.redeem(token, "10.0.0.6")
    assert controller.log == []  # the service never saw a request
    assert controller.store.load()[token.id].used_at is None


def test_a_failed_hand_over_spends_the_token_and_says_what_to_do(controller: Controller) -> None:
    token = controller.issue()
    controller.fail = True
    with pytest.raises(JoinError, match="could not hand over .*cluster.token"):
        client.redeem(token, "10.0.0.6")
    assert controller.store.load()[token.id].used_by == "10.0.0.6"


def test_an_unreachable_controller_is_one_clear_error(tmp_path: Path) -> None:
    token, _ = tk.issue(controller="127.0.0.1", port=1, fingerprint="ab" * 32, now=0, ttl_s=1,
                        random_id=b"\x01" * 8, random_secret=b"\x02" * 32)
    with pytest.raises(JoinError, match="Cannot reach the controller's join service at 127.0.0.1:1"):
        client.redeem(token, "10.0.0.6", timeout_s=2)


def test_two_joiners_racing_with_one_token_cannot_both_join(controller: Controller) -> None:
    token = controller.issue()
    outcomes: list[str] = []

    def join(name: str) -> None:
        try:
            client.redeem(token, name)
            outcomes.append("joined")
        except JoinError as e:
            outcomes.append(e.message)

    threads = [threading.Thread(target=join, args=(f"10.0.0.{i}",)) for i in range(6, 12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("joined") == 1 and len(controller.handed) == 1
    assert all("already used" in o for o in outcomes if o != "joined")
