"""Naming a hung API: its unit's state and its listening socket's accept queue, read from the real kernel."""

from __future__ import annotations

import socket
import time

from provision.openstack.hung import api_units, parse_listen_queue, sentence
from provision.openstack.profile import profile
from provision.settings import Settings
from provision.target.local import LocalTarget


def test_the_accept_queue_of_a_socket_that_never_accepts_is_counted() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)  # listening, never accepting: a hung service's socket
    port = server.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port), timeout=2) for _ in range(3)]
    try:
        out = ""
        for _ in range(20):  # the kernel completes the handshakes at once; give it a moment
            out = LocalTarget().run(["ss", "-Hltn", f"sport = :{port}"]).stdout
            if parse_listen_queue(out) == 3:
                break
            time.sleep(0.05)
        assert parse_listen_queue(out) == 3, out
    finally:
        for c in clients:
            c.close()
        server.close()
    assert parse_listen_queue(LocalTarget().run(["ss", "-Hltn", f"sport = :{port}"]).stdout) is None


def test_sentences_name_the_unit_and_what_is_wrong() -> None:
    active = {"ActiveState": "active", "SubState": "running", "MainPID": "2811"}
    hung = sentence("cinder-api.service", active, 54, 8776)
    assert "cinder-api.service is active (running, pid 2811) but does not answer on port 8776" in hung
    assert "54 connection(s) wait in its accept queue" in hung and "journalctl -u cinder-api.service" in hung
    assert "nothing listens on port 8776" in sentence("cinder-api.service", active, None, 8776)
    failed = sentence("cinder-api.service", {"ActiveState": "failed", "SubState": "failed", "MainPID": "0"}, None, 8776)
    assert failed.startswith("cinder-api.service is failed") and "nothing answers" in failed


def test_every_api_has_its_unit_and_port_on_each_distribution() -> None:
    s = Settings()
    debian, ubuntu = api_units(profile("debian-12"), s), api_units(profile("ubuntu-24.04"), s)
    assert debian["cinder"] == ("cinder-api.service", s.openstack.cinder_port)
    assert ubuntu["cinder"][0] == "apache2.service" and ubuntu["keystone"][0] == "apache2.service"
    assert set(debian) == {"keystone", "glance", "cinder", "nova", "placement", "neutron"}
