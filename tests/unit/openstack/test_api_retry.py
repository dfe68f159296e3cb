"""The API client rides out a service still starting: which answers it sends again, which not.

A real HTTP server on loopback plays the API (Keystone's token call, then a resource that
fails a given number of times); the client under test is the real one.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import threading
from typing import Any, Iterator

import pytest

from provision.openstack.api import Cloud, HttpError
from provision.settings import Settings


class _Api(http.server.BaseHTTPRequestHandler):
    failures: dict[str, int] = {}
    seen: list[str] = []

    def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.seen.append(f"{self.command} {self.path}")
        if self.path == "/v3/auth/tokens":
            return self._answer(201, {"token": {"project": {"id": "p1"}}}, {"X-Subject-Token": "tok"})
        left = self.failures.get(self.path, 0)
        if left:
            self.failures[self.path] = left - 1
            return self._answer(500, {"computeFault": {"code": 500, "message": "Unexpected API Error."}})
        return self._answer(200, {"ok": True})

    do_GET = do_POST = _serve

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def cloud() -> Iterator[Cloud]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    s = Settings()
    s = dataclasses.replace(s, openstack=dataclasses.replace(s.openstack, keystone_port=server.server_address[1]))
    _Api.failures, _Api.seen = {}, []
    try:
        yield Cloud(s, "pw", retry_s=10)
    finally:
        server.shutdown()


def test_a_read_that_failed_inside_a_starting_service_is_sent_again(cloud: Cloud) -> None:
    _Api.failures["/v3/servers"] = 2
    assert cloud.call("GET", f"{cloud.keystone.rsplit('/v3', 1)[0]}/v3/servers") == {"ok": True}
    assert _Api.seen.count("GET /v3/servers") == 3


def test_a_post_that_answered_500_is_not_sent_again(cloud: Cloud) -> None:
    _Api.failures["/v3/servers"] = 1
    with pytest.raises(HttpError, match="answered 500"):
        cloud.call("POST", f"{cloud.keystone.rsplit('/v3', 1)[0]}/v3/servers", {"server": {}})
    assert _Api.seen.count("POST /v3/servers") == 1
