"""The metadata client over real HTTP: moto's fixed IMDS, the sim's IMDS with tokens required, scripted failures."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import pytest

import provision
from provision.exceptions import ConfigError, MetadataError
from provision.instance import InstanceInfo, region_from_az
from provision.metadata import MetadataClient, main
from provision.settings import Settings
from sim.imds import IMDSServer
from sim.imds_tree import InstanceView, metadata_tree

INSTANCE = {
    "InstanceId": "i-0123456789abcdef0",
    "ImageId": "ami-0abcdef1234567890",
    "InstanceType": "m1.xlarge",
    "PrivateIpAddress": "10.0.3.17",
    "PrivateDnsName": "ip-10-0-3-17.ec2.internal",
    "PublicIpAddress": "54.1.2.3",
    "PublicDnsName": "ec2-54-1-2-3.compute-1.amazonaws.com",
    "Placement": {"AvailabilityZone": "us-east-1c"},
    "KeyName": "demo",
}
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGk demo"


class Clock:
    """A monotonic clock tests move by hand."""

    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def fast(url: str, **kw: Any) -> MetadataClient:
    """A client with small timeouts and backoff, so failure paths take milliseconds."""
    options: dict[str, Any] = {"timeout": 1.0, "retries": 2, "backoff": 0.01}
    options.update(kw)
    return MetadataClient(url, **options)


# --- moto's own metadata endpoint ------------------------------------------------------
def test_moto_answers_through_v2(moto_url: str) -> None:
    client = fast(moto_url, allow_v1=False)
    assert client.get("instance-id") == "i-fake"
    assert client.get("local-ipv4") == "127.0.0.1"
    assert client.get("placement/availability-zone") == "us-east-1a"
    assert client.mode == "v2"


def test_moto_has_no_public_keys(moto_url: str) -> None:
    # moto raises NotImplementedError (HTTP 500) here: retried, then a MetadataError, not a silent None.
    with pytest.raises(MetadataError) as e:
        fast(moto_url, retries=1).get("public-keys/0/openssh-key", default=None)
    assert "HTTP 500" in str(e.value)
    assert "2 attempts" in str(e.value)


# --- the sim's metadata server -----------------------------------------------------------
@dataclass
class Sim:
    server: IMDSServer
    clock: Clock
    views: dict[str, InstanceView] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def puts(self) -> int:
        return self.server.count(method="PUT", path="/latest/api/token")


@pytest.fixture
def sim() -> Iterator[Sim]:
    """The sim's IMDS on 127.0.0.1 answering as INSTANCE, with HttpTokens=required."""
    clock = Clock()
    views = {"127.0.0.1": InstanceView(metadata_tree(INSTANCE, KEY, "us-east-1"), http_tokens="required")}
    with IMDSServer("127.0.0.1", 0, views.get, clock=clock) as server:
        yield Sim(server, clock, views)


def test_snapshot_through_v2_when_tokens_are_required(sim: Sim) -> None:
    info = fast(sim.url, allow_v1=False).snapshot()
    assert info == InstanceInfo(
        instance_id="i-0123456789abcdef0",
        ami_id="ami-0abcdef1234567890",
        instance_type="m1.xlarge",
        local_ipv4="10.0.3.17",
        local_hostname="ip-10-0-3-17.ec2.internal",
        availability_zone="us-east-1c",
        region="us-east-1",
        public_ipv4="54.1.2.3",
        public_hostname="ec2-54-1-2-3.compute-1.amazonaws.com",
        openssh_key=KEY,
        mac=info.mac,
    )
    assert info.mac and info.mac.startswith("02:")


def test_v1_client_is_refused_when_tokens_are_required(sim: Sim) -> None:
    with pytest.raises(MetadataError) as e:
        fast(sim.url, v1_only=True).get("instance-id")
    message = str(e.value)
    assert "HttpTokens=required" in message
    assert f"IMDSv1 GET {sim.url}/latest/meta-data/instance-id: HTTP 401" in message
    assert sim.server.count(status=401) == 1  # a 401 is an answer: not retried


def test_token_is_reused(sim: Sim) -> None:
    client = fast(sim.url)
    for path in ("instance-id", "local-ipv4", "placement/", "mac", "public-keys/"):
        client.get(path)
    client.snapshot()
    assert sim.puts() == 1
    assert sim.server.count(status=401) == 0


def test_token_is_renewed_before_it_expires(sim: Sim) -> None:
    clock = Clock()
    client = fast(sim.url, token_ttl=10, clock=clock)
    client.get("instance-id")
    clock.now += 8.5  # still valid: no new token
    client.get("instance-id")
    assert sim.puts() == 1
    clock.now += 0.6  # within the last 10 % of its life: renewed
    client.get("instance-id")
    assert sim.puts() == 2
    assert sim.server.count(status=401) == 0


def test_expired_token_is_replaced_once_on_401(sim: Sim) -> None:
    client = fast(sim.url, token_ttl=5)
    client.get("instance-id")
    sim.clock.now += 6  # the server forgot it; the client (real clock) still trusts it
    assert client.get("local-ipv4") == "10.0.3.17"
    assert sim.puts() == 2
    assert sim.server.count(status=401) == 1


def test_unknown_instance_error_carries_the_server_text(sim: Sim) -> None:
    client = fast(sim.url)
    client.get("instance-id")
    sim.server.resolve = lambda ip: None  # the instance is gone: every request is refused
    with pytest.raises(MetadataError) as e:
        client.get("instance-id")
    assert "No simulated instance has the address 127.0.0.1" in str(e.value)


def test_missing_path_is_not_retried(sim: Sim) -> None:
    client = fast(sim.url)
    with pytest.raises(MetadataError) as e:
        client.get("no/such/path")
    assert "no such path (404)" in str(e.value)
    assert f"{sim.url}/latest/meta-data/no/such/path" in str(e.value)
    assert client.get("no/such/path", default=None) is None
    assert client.get("no/such/path", default="fallback") == "fallback"
    assert sim.server.count(path="/latest/meta-data/no/such/path") == 3


def test_optional_values_are_none_without_public_address_or_key() -> None:
    private = {k: v for k, v in INSTANCE.items() if k not in ("PublicIpAddress", "PublicDnsName", "KeyName")}
    views = {"127.0.0.1": InstanceView(metadata_tree(private, None, "eu-west-1"))}
    with IMDSServer("127.0.0.1", 0, views.get) as server:
        info = fast(server.url).snapshot()
    assert (info.public_ipv4, info.public_hostname, info.openssh_key) == (None, None, None)
    assert info.region == "us-east-1"  # from the availability zone, not the server's region argument


def test_identity_document_and_dynamic(sim: Sim) -> None:
    client = fast(sim.url)
    doc = client.instance_identity()
    assert doc is not None
    assert (doc["instanceId"], doc["privateIp"], doc["region"]) == ("i-0123456789abcdef0", "10.0.3.17", "us-east-1")
    assert client.get_dynamic("instance-identity/") == "document"
    assert client.user_data() is None


def test_closed_port_fails_quickly_with_what_was_tried() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    with pytest.raises(MetadataError) as e:
        fast(url, retries=3, backoff=0.02).get("instance-id")
    elapsed = time.monotonic() - start
    message = str(e.value)
    assert elapsed < 2
    assert f"{url}/latest/meta-data/instance-id" in message
    assert f"IMDSv2 token PUT {url}/latest/api/token: no answer after 4 attempts" in message
    assert "ConnectionRefusedError" in message
    assert "Hint:" in message


def test_backoff_doubles_between_attempts() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: list[float] = []
    with pytest.raises(MetadataError):
        MetadataClient(f"http://127.0.0.1:{port}", retries=3, backoff=0.5, sleep=sleeps.append).get("instance-id")
    assert sleeps == [0.5, 1.0, 2.0]


# --- scripted endpoints: fallback, retries, timeouts ----------------------------------------
Script = Callable[[str, str, dict[str, str]], "tuple[int, str] | tuple[int, str, float]"]


@dataclass
class Stub:
    url: str
    calls: list[tuple[str, str]]
    script: list[Script]

    def set(self, script: Script) -> None:
        self.script[0] = script


@pytest.fixture
def stub() -> Iterator[Stub]:
    """An HTTP endpoint whose answers a test scripts: (method, path, headers) -> (status, body[, delay])."""
    calls: list[tuple[str, str]] = []
    script: list[Script] = [lambda m, p, h: (404, "")]

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            calls.append((self.command, self.path))
            answer = script[0](self.command, self.path, dict(self.headers.items()))
            status, body = answer[0], answer[1]
            if len(answer) == 3:
                time.sleep(answer[2])  # type: ignore[misc]
            data = body.encode()
            try:
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up (timeout test)

        do_GET = do_PUT = _any

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield Stub(f"http://127.0.0.1:{httpd.server_address[1]}", calls, script)
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("status", [403, 404, 405])
def test_falls_back_to_v1_when_the_token_endpoint_is_missing(stub: Stub, status: int) -> None:
    stub.set(lambda m, p, h: (status, "") if m == "PUT" else (200, "i-v1") if "x-aws-ec2-metadata-token" not in {k.lower() for k in h} else (400, ""))
    client = fast(stub.url)
    assert client.get("instance-id") == "i-v1"
    assert client.get("instance-id") == "i-v1"
    assert client.mode == "v1"
    assert [c for c in stub.calls if c[0] == "PUT"] == [("PUT", "/latest/api/token")]  # the fallback is remembered


@pytest.mark.parametrize("status", [403, 404, 405])
def test_no_fallback_when_v1_is_not_allowed(stub: Stub, status: int) -> None:
    stub.set(lambda m, p, h: (status, "") if m == "PUT" else (200, "i-v1"))
    with pytest.raises(MetadataError) as e:
        fast(stub.url, allow_v1=False).get("instance-id")
    assert "IMDSv2 is not available and IMDSv1 is not allowed" in str(e.value)
    assert f"HTTP {status}" in str(e.value)
    assert not [c for c in stub.calls if c[0] == "GET"]


def test_token_put_timeout_falls_back_to_v1(stub: Stub) -> None:
    # As behind a hop limit: the PUT's answer never arrives, plain GETs do.
    stub.set(lambda m, p, h: (200, "late-token", 0.5) if m == "PUT" else (200, "i-v1"))
    client = fast(stub.url, timeout=0.2)
    assert client.get("instance-id") == "i-v1"
    assert client.mode == "v1"


def test_token_put_timeout_without_v1_is_retried_then_an_error(stub: Stub) -> None:
    stub.set(lambda m, p, h: (200, "late-token", 0.3))
    with pytest.raises(MetadataError) as e:
        fast(stub.url, timeout=0.1, retries=1, allow_v1=False).get("instance-id")
    assert "no answer after 2 attempts" in str(e.value)
    assert "TimeoutError" in str(e.value)


def test_server_errors_are_retried_then_answered(stub: Stub) -> None:
    answers = iter([(503, "busy"), (500, "oops"), (200, "i-ok")])
    stub.set(lambda m, p, h: (200, "tok") if m == "PUT" else next(answers))
    client = fast(stub.url, retries=2)
    assert client.get("instance-id") == "i-ok"
    assert len([c for c in stub.calls if c[0] == "GET"]) == 3


def test_server_errors_exhaust_the_retries(stub: Stub) -> None:
    stub.set(lambda m, p, h: (200, "tok") if m == "PUT" else (503, "Service Unavailable"))
    with pytest.raises(MetadataError) as e:
        fast(stub.url, retries=2).get("instance-id")
    assert "IMDSv2 GET" in str(e.value)
    assert "no answer after 3 attempts (last error: HTTP 503" in str(e.value)


def test_a_second_401_after_a_new_token_is_an_error(stub: Stub) -> None:
    state = {"refuse": False}
    stub.set(lambda m, p, h: (200, f"tok{len(stub.calls)}") if m == "PUT" else (401, "") if state["refuse"] else (200, "i-1"))
    client = fast(stub.url)
    assert client.get("instance-id") == "i-1"
    state["refuse"] = True
    with pytest.raises(MetadataError, match="HTTP 401"):
        client.get("instance-id")
    assert [c[0] for c in stub.calls] == ["PUT", "GET", "GET", "PUT", "GET"]


def test_bad_token_ttl_answer_is_not_a_fallback(stub: Stub) -> None:
    stub.set(lambda m, p, h: (400, "bad ttl") if m == "PUT" else (200, "i-v1"))
    with pytest.raises(MetadataError, match="the token request was refused"):
        fast(stub.url).get("instance-id")


def test_region_falls_back_to_placement_region(stub: Stub) -> None:
    values = {
        "instance-id": "i-1",
        "ami-id": "ami-1",
        "instance-type": "m1.xlarge",
        "local-ipv4": "10.0.0.1",
        "local-hostname": "ip-10-0-0-1.example",
        "placement/availability-zone": "weird-zone",
        "placement/region": "xx-test-1",
    }
    prefix = "/latest/meta-data/"
    stub.set(lambda m, p, h: (200, "tok") if m == "PUT" else (200, values[p[len(prefix):]]) if p[len(prefix):] in values else (404, ""))
    info = fast(stub.url).snapshot()
    assert (info.availability_zone, info.region, info.public_ipv4, info.mac) == ("weird-zone", "xx-test-1", None, None)


# --- small pieces --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("az", "region"),
    [
        ("us-east-1a", "us-east-1"),
        ("eu-west-3c", "eu-west-3"),
        ("ap-southeast-2b", "ap-southeast-2"),
        ("us-west-2-lax-1a", "us-west-2"),
        ("us-gov-west-1a", "us-gov-west-1"),
        ("cn-north-1b", "cn-north-1"),
        ("us-iso-east-1a", "us-iso-east-1"),
        ("us-isob-east-1a", "us-isob-east-1"),
        ("weird-zone", None),
        ("", None),
    ],
)
def test_region_from_az(az: str, region: str | None) -> None:
    assert region_from_az(az) == region


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_url": "https://169.254.169.254"},
        {"base_url": "169.254.169.254"},
        {"base_url": "http://host:notaport"},
        {"token_ttl": 0},
        {"token_ttl": 21601},
        {"retries": -1},
        {"timeout": 0},
        {"allow_v1": False, "v1_only": True},
    ],
)
def test_invalid_options(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        MetadataClient(**kwargs)


def test_from_settings() -> None:
    client = MetadataClient.from_settings(Settings().replace(metadata_url="http://127.0.0.1:8080", metadata_allow_v1=False))
    assert (client.base_url, client.allow_v1) == ("http://127.0.0.1:8080", False)


def test_cli_prints_a_value_and_the_snapshot(sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", sim.url, "--v2-only", "local-ipv4"]) == 0
    assert capsys.readouterr().out == "10.0.3.17\n"
    assert main(["--url", sim.url, "dynamic/instance-identity/document"]) == 0
    assert json.loads(capsys.readouterr().out)["instanceId"] == "i-0123456789abcdef0"
    assert main(["--url", sim.url]) == 0
    assert json.loads(capsys.readouterr().out)["public_hostname"] == "ec2-54-1-2-3.compute-1.amazonaws.com"
    assert main(["--url", sim.url, "--retries", "0", "nope"]) == 1
    assert "no such path (404)" in capsys.readouterr().err


def test_runs_on_a_bare_python(sim: Sim) -> None:
    """At boot the modules run under the distribution's python3 with no site-packages: stdlib only."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(provision.__file__)))
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": repo}
    check = (
        "import sys, provision.metadata, provision.hostname, sim.imds\n"
        "extra = sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names) - {'provision', 'sim', '__main__'})\n"
        "assert not extra, extra\n"
    )
    r = subprocess.run([sys.executable, "-S", "-c", check], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [sys.executable, "-S", "-m", "provision.metadata", "--url", sim.url, "--v2-only", "public-keys/0/openssh-key"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert (r.returncode, r.stdout) == (0, KEY + "\n"), r.stderr
