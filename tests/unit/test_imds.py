"""The sim's metadata service: the tree from a real moto instance, IMDSv2 semantics, listings, per-address answers."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest
from moto import mock_aws

from provision.exceptions import SimError
from provision.metadata import MetadataClient
from sim.imds import TOKEN_HEADER, TTL_HEADER, IMDSServer
from sim.imds_tree import InstanceView, instance_view, lookup, metadata_tree

REGION = "us-east-1"
NOBODY: dict[str, InstanceView] = {}  # a resolver that knows no instance
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
}


@pytest.fixture(scope="module")
def launched() -> Iterator[dict[str, Any]]:
    """Two instances launched in moto: one public with a key pair and tags, one private without a key.

    Module-scoped (launching costs a second or two), so it sets the same fake credentials
    as the function-scoped ``aws_credentials`` fixture itself.
    """
    with pytest.MonkeyPatch.context() as mp:
        for k, v in FAKE_CREDENTIALS.items():
            mp.setenv(k, v)
        mp.delenv("AWS_PROFILE", raising=False)
        with mock_aws():
            ec2 = boto3.client("ec2", region_name=REGION)
            ec2.create_key_pair(KeyName="demo", KeyType="ed25519")
            public_key = ec2.describe_key_pairs(KeyNames=["demo"], IncludePublicKey=True)["KeyPairs"][0]["PublicKey"]
            image = ec2.register_image(
                Name="debian-12-test",
                Architecture="x86_64",
                RootDeviceName="/dev/xvda",
                VirtualizationType="hvm",
                BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}],
            )["ImageId"]
            sg = ec2.create_security_group(GroupName="cephdemo", Description="demo")["GroupId"]
            public = ec2.run_instances(
                ImageId=image,
                MinCount=1,
                MaxCount=1,
                InstanceType="m1.xlarge",
                KeyName="demo",
                SecurityGroupIds=[sg],
                MetadataOptions={"HttpTokens": "required", "HttpPutResponseHopLimit": 2, "InstanceMetadataTags": "enabled"},
                TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "cephdemo"}]}],
            )
            subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
            private = ec2.run_instances(
                ImageId=image,
                MinCount=1,
                MaxCount=1,
                InstanceType="m1.xlarge",
                NetworkInterfaces=[{"DeviceIndex": 0, "AssociatePublicIpAddress": False, "SubnetId": subnet}],
            )
            ids = [public["Instances"][0]["InstanceId"], private["Instances"][0]["InstanceId"]]
            reservations = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    by_id = {i["InstanceId"]: (r["ReservationId"], i) for r in reservations for i in r["Instances"]}
    yield {
        "public": by_id[ids[0]][1],
        "public_reservation": by_id[ids[0]][0],
        "private": by_id[ids[1]][1],
        "public_key": public_key,
        "image": image,
        "sg": sg,
    }


@pytest.fixture(scope="module")
def tree(launched: dict[str, Any]) -> dict[str, str]:
    return metadata_tree(launched["public"], launched["public_key"], REGION, reservation_id=launched["public_reservation"])


# --- metadata_tree -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("meta-data/instance-id", lambda i, x: i["InstanceId"]),
        ("meta-data/ami-id", lambda i, x: x["image"]),
        ("meta-data/instance-type", lambda i, x: "m1.xlarge"),
        ("meta-data/local-ipv4", lambda i, x: i["PrivateIpAddress"]),
        ("meta-data/public-ipv4", lambda i, x: i["PublicIpAddress"]),
        ("meta-data/public-hostname", lambda i, x: i["PublicDnsName"]),
        ("meta-data/local-hostname", lambda i, x: i["PrivateDnsName"]),
        ("meta-data/hostname", lambda i, x: i["PrivateDnsName"]),
        ("meta-data/placement/availability-zone", lambda i, x: i["Placement"]["AvailabilityZone"]),
        ("meta-data/placement/region", lambda i, x: REGION),
        ("meta-data/mac", lambda i, x: i["NetworkInterfaces"][0]["MacAddress"]),
        ("meta-data/public-keys/", lambda i, x: "0=demo"),
        ("meta-data/public-keys/0/openssh-key", lambda i, x: x["public_key"]),
        ("meta-data/reservation-id", lambda i, x: x["public_reservation"]),
        ("meta-data/security-groups", lambda i, x: "cephdemo"),
        ("meta-data/tags/instance/Name", lambda i, x: "cephdemo"),
        ("meta-data/instance-life-cycle", lambda i, x: "on-demand"),
        ("meta-data/services/partition", lambda i, x: "aws"),
    ],
)
def test_tree_holds_the_instance_own_values(tree: dict[str, str], launched: dict[str, Any], path: str, expected: Any) -> None:
    assert tree[path] == expected(launched["public"], launched)


def test_tree_network_interface_entries(tree: dict[str, str], launched: dict[str, Any]) -> None:
    inst = launched["public"]
    mac = inst["NetworkInterfaces"][0]["MacAddress"]
    base = f"meta-data/network/interfaces/macs/{mac}/"
    assert tree[base + "local-ipv4s"] == inst["PrivateIpAddress"]
    assert tree[base + "public-ipv4s"] == inst["PublicIpAddress"]
    assert tree[base + "interface-id"] == inst["NetworkInterfaces"][0]["NetworkInterfaceId"]
    assert tree[base + "security-group-ids"] == launched["sg"]
    assert tree[base + "subnet-id"] == inst["SubnetId"]
    assert tree[base + "vpc-id"] == inst["VpcId"]
    assert tree[base + "device-number"] == "0"


def test_tree_identity_document(tree: dict[str, str], launched: dict[str, Any]) -> None:
    inst = launched["public"]
    doc = json.loads(tree["dynamic/instance-identity/document"])
    assert doc["instanceId"] == inst["InstanceId"]
    assert doc["imageId"] == launched["image"]
    assert doc["privateIp"] == inst["PrivateIpAddress"]
    assert doc["region"] == REGION
    assert doc["availabilityZone"] == inst["Placement"]["AvailabilityZone"]
    assert doc["accountId"] == "123456789012"
    assert doc["pendingTime"].endswith("Z")


def test_tree_leaves_out_what_ec2_leaves_out(launched: dict[str, Any]) -> None:
    tree = metadata_tree(launched["private"], None, REGION)
    assert "meta-data/public-ipv4" not in tree
    assert "meta-data/public-hostname" not in tree
    assert not any(k.startswith("meta-data/public-keys") for k in tree)
    assert not any(k.startswith("meta-data/tags/") for k in tree)  # InstanceMetadataTags disabled
    assert "user-data" not in tree
    assert tree["meta-data/local-ipv4"] == launched["private"]["PrivateIpAddress"]


def test_tree_of_a_minimal_instance_dict() -> None:
    tree = metadata_tree({"InstanceId": "i-0abc", "PrivateIpAddress": "10.0.0.5"}, "ssh-ed25519 AAAA k", "eu-west-1", user_data=b"#!/bin/sh\n")
    assert tree["meta-data/placement/availability-zone"] == "eu-west-1a"
    assert tree["meta-data/mac"].startswith("02:")
    assert tree["meta-data/public-keys/"] == "0=key"
    assert tree["user-data"] == "#!/bin/sh\n"


def test_instance_view_follows_metadata_options(launched: dict[str, Any]) -> None:
    view = instance_view(launched["public"], launched["public_key"], REGION)
    assert (view.http_tokens, view.hop_limit, view.enabled) == ("required", 2, True)
    assert view.instance_id == launched["public"]["InstanceId"]
    assert instance_view(launched["private"], None, REGION).http_tokens == "optional"


# --- listings ------------------------------------------------------------------------
LISTING_TREE = {
    "meta-data/instance-id": "i-1",
    "meta-data/placement/availability-zone": "us-east-1a",
    "meta-data/placement/region": "us-east-1",
    "meta-data/public-keys/": "0=demo",
    "meta-data/public-keys/0/openssh-key": "ssh-ed25519 AAAA",
    "dynamic/instance-identity/document": "{}",
    "user-data": "hello",
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", "dynamic\nmeta-data\nuser-data"),
        ("meta-data/", "instance-id\nplacement/\npublic-keys/"),
        ("meta-data", "instance-id\nplacement/\npublic-keys/"),
        ("meta-data/placement/", "availability-zone\nregion"),
        ("meta-data/placement", "availability-zone\nregion"),
        ("meta-data/public-keys/", "0=demo"),
        ("meta-data/public-keys", "0=demo"),
        ("meta-data/public-keys/0/", "openssh-key"),
        ("meta-data/public-keys/0", "openssh-key"),
        ("meta-data/public-keys/0/openssh-key", "ssh-ed25519 AAAA"),
        ("dynamic/", "instance-identity/"),
        ("meta-data/instance-id", "i-1"),
        ("user-data", "hello"),
        ("meta-data/nope", None),
        ("meta-data/placement/nope/", None),
        ("meta-data/instance-id/extra", None),
    ],
)
def test_lookup(path: str, expected: str | None) -> None:
    assert lookup(LISTING_TREE, path) == expected


# --- the request decisions, without sockets -------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _view(iid: str, tokens: str = "optional", **kw: Any) -> InstanceView:
    return InstanceView(tree={**LISTING_TREE, "meta-data/instance-id": iid}, http_tokens=tokens, **kw)


@pytest.fixture
def server() -> IMDSServer:
    """An unstarted server: respond() decides answers without sockets."""
    views = {
        "10.0.0.1": _view("i-optional"),
        "10.0.0.2": _view("i-required", "required"),
        "10.0.0.3": _view("i-disabled", enabled=False),
    }
    return IMDSServer("127.0.0.1", 0, views.get, clock=FakeClock())


def _token(server: IMDSServer, client: str, ttl: str = "60") -> str:
    answer = server.respond(client, "PUT", "/latest/api/token", {TTL_HEADER: ttl})
    assert answer.status == 200, answer
    return answer.body


@pytest.mark.parametrize(
    ("method", "headers", "status"),
    [
        ("PUT", {TTL_HEADER: "21600"}, 200),
        ("PUT", {TTL_HEADER: "1"}, 200),
        ("PUT", {}, 400),
        ("PUT", {TTL_HEADER: "0"}, 400),
        ("PUT", {TTL_HEADER: "21601"}, 400),
        ("PUT", {TTL_HEADER: "ten"}, 400),
        ("PUT", {TTL_HEADER: "60", "X-Forwarded-For": "10.9.9.9"}, 403),
        ("GET", {TTL_HEADER: "60"}, 405),
        ("POST", {TTL_HEADER: "60"}, 405),
    ],
)
def test_token_request(server: IMDSServer, method: str, headers: dict[str, str], status: int) -> None:
    answer = server.respond("10.0.0.1", method, "/latest/api/token", headers)
    assert answer.status == status
    if status == 200:
        assert len(answer.body) >= 40
        assert answer.headers[TTL_HEADER] == headers[TTL_HEADER]
        assert answer.ip_ttl == 1  # the hop limit goes with the PUT's answer


def test_token_header_names_are_case_insensitive(server: IMDSServer) -> None:
    token = server.respond("10.0.0.2", "PUT", "/latest/api/token", {TTL_HEADER.lower(): "60"}).body
    answer = server.respond("10.0.0.2", "GET", "/latest/meta-data/instance-id", {TOKEN_HEADER.upper(): token})
    assert (answer.status, answer.body) == (200, "i-required")


@pytest.mark.parametrize(
    ("client", "token", "status"),
    [
        ("10.0.0.1", None, 200),  # optional: IMDSv1 is answered
        ("10.0.0.2", None, 401),  # required: no token, no answer
        ("10.0.0.1", "own", 200),
        ("10.0.0.2", "own", 200),
        ("10.0.0.1", "bogus", 401),  # a bad token is refused even when tokens are optional
        ("10.0.0.2", "bogus", 401),
        ("10.0.0.2", "other", 401),  # tokens are bound to the instance that asked
        ("10.0.0.1", "expired", 401),
        ("10.0.0.2", "expired", 401),
        ("10.0.0.9", None, 403),  # nobody has that address
        ("10.0.0.3", None, 403),  # HttpEndpoint=disabled
    ],
)
def test_get_token_rules(server: IMDSServer, client: str, token: str | None, status: int) -> None:
    clock = server._clock
    assert isinstance(clock, FakeClock)
    headers: dict[str, str] = {}
    if token == "own":
        headers[TOKEN_HEADER] = _token(server, client)
    elif token == "bogus":
        headers[TOKEN_HEADER] = "AQAEAbogus"
    elif token == "other":
        headers[TOKEN_HEADER] = _token(server, "10.0.0.1")
    elif token == "expired":
        headers[TOKEN_HEADER] = _token(server, client, ttl="5")
        clock.now += 5.5
    answer = server.respond(client, "GET", "/latest/meta-data/instance-id", headers)
    assert answer.status == status, answer.body
    if status == 403 and client == "10.0.0.9":
        assert "No simulated instance has the address 10.0.0.9" in answer.body


def test_token_lives_until_its_ttl(server: IMDSServer) -> None:
    token = _token(server, "10.0.0.2", ttl="10")
    server._clock.now += 9  # type: ignore[attr-defined]
    answer = server.respond("10.0.0.2", "GET", "/latest/meta-data/instance-id", {TOKEN_HEADER: token})
    assert answer.status == 200
    assert answer.headers[TTL_HEADER] == "1"


def test_the_root_lists_every_api_version_latest_last(server: IMDSServer) -> None:
    listing = server.respond("10.0.0.1", "GET", "/", {}).body.splitlines()
    assert listing[0] == "1.0" and listing[-1] == "latest" and "2009-04-04" in listing and "2021-03-23" in listing
    assert listing == sorted(listing[:-1], key=lambda v: (v != "1.0", v)) + ["latest"]


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        ("/latest/meta-data/instance-id", 200, "i-optional"),
        ("/latest/meta-data", 200, "instance-id\nplacement/\npublic-keys/"),
        ("/latest/meta-data/", 200, "instance-id\nplacement/\npublic-keys/"),
        ("/latest//meta-data/instance-id", 200, "i-optional"),  # ec2-metadata asks this way for some paths
        ("/latest/meta-data/instance-id?x=1", 200, "i-optional"),
        ("/latest/", 200, "dynamic\nmeta-data\nuser-data"),
        ("/latest", 200, "dynamic\nmeta-data\nuser-data"),
        ("/latest/meta-data/nope", 404, None),
        # EC2 serves every dated API version with the same tree (cloud-init asks dated ones)
        ("/2009-04-04/meta-data/instance-id", 200, "i-optional"),
        ("/2021-03-23/meta-data/", 200, "instance-id\nplacement/\npublic-keys/"),
        ("/2021-03-23/dynamic/instance-identity/document", 200, "{}"),
        ("/2009-04-05/meta-data/instance-id", 404, None),  # not a version EC2 has
        ("/meta-data/instance-id", 404, None),
        ("/latest/dynamic/instance-identity/document", 200, "{}"),
    ],
)
def test_paths(server: IMDSServer, path: str, status: int, body: str | None) -> None:
    answer = server.respond("10.0.0.1", "GET", path, {})
    assert answer.status == status
    if body is not None:
        assert answer.body == body


def test_other_methods_on_metadata_are_refused(server: IMDSServer) -> None:
    assert server.respond("10.0.0.1", "PUT", "/latest/meta-data/instance-id", {}).status == 405


def test_resolver_failure_is_a_500_not_a_dead_server() -> None:
    def broken(ip: str) -> InstanceView | None:
        raise RuntimeError("moto is gone")

    answer = IMDSServer("127.0.0.1", 0, broken).respond("10.0.0.1", "GET", "/latest/meta-data/", {})
    assert answer.status == 500
    assert "moto is gone" in answer.body


def test_requests_are_recorded(server: IMDSServer) -> None:
    server.respond("10.0.0.1", "GET", "/latest/meta-data/instance-id", {})
    server.respond("10.0.0.1", "GET", "/latest/meta-data/nope", {})
    assert server.count(method="GET") == 2
    assert server.count(status=404) == 1
    assert server.requests[-1].path == "/latest/meta-data/nope"


# --- over HTTP ------------------------------------------------------------------------
def _http(url_host: str, port: int, method: str, path: str, headers: dict[str, str] | None = None, source: str | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection(url_host, port, timeout=5, source_address=(source, 0) if source else None)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


@pytest.fixture
def two_instances(launched: dict[str, Any]) -> Iterator[IMDSServer]:
    """A server answering 127.0.0.1 as the public instance and 127.0.0.2 as the private one."""
    views = {
        "127.0.0.1": instance_view(launched["public"], launched["public_key"], REGION, reservation_id=launched["public_reservation"]),
        "127.0.0.2": instance_view(launched["private"], None, REGION),
    }
    with IMDSServer("127.0.0.1", 0, views.get) as server:
        yield server


def _can_bind(address: str) -> bool:
    try:
        with socket.socket() as s:
            s.bind((address, 0))
        return True
    except OSError:
        return False


def test_answers_by_source_address(two_instances: IMDSServer, launched: dict[str, Any]) -> None:
    host, port = two_instances.address
    if not _can_bind("127.0.0.2"):  # pragma: no cover - loopback /8 is local on Linux
        pytest.skip("this host cannot send from 127.0.0.2")
    status, token = _http(host, port, "PUT", "/latest/api/token", {TTL_HEADER: "60"}, source="127.0.0.1")
    assert status == 200
    assert _http(host, port, "GET", "/latest/meta-data/instance-id", {TOKEN_HEADER: token}, "127.0.0.1") == (200, launched["public"]["InstanceId"])
    # The private instance allows IMDSv1, but the public one's token is not valid for it.
    assert _http(host, port, "GET", "/latest/meta-data/instance-id", {}, "127.0.0.2") == (200, launched["private"]["InstanceId"])
    assert _http(host, port, "GET", "/latest/meta-data/instance-id", {TOKEN_HEADER: token}, "127.0.0.2")[0] == 401
    # The public instance requires tokens.
    assert _http(host, port, "GET", "/latest/meta-data/instance-id", {}, "127.0.0.1")[0] == 401
    # The metadata client sees each instance's own snapshot.
    one = MetadataClient(two_instances.url, allow_v1=False, source_address="127.0.0.1").snapshot()
    two = MetadataClient(two_instances.url, source_address="127.0.0.2").snapshot()
    assert (one.instance_id, one.local_ipv4, one.openssh_key) == (
        launched["public"]["InstanceId"],
        launched["public"]["PrivateIpAddress"],
        launched["public_key"],
    )
    assert (two.instance_id, two.public_ipv4, two.public_hostname, two.openssh_key) == (
        launched["private"]["InstanceId"],
        None,
        None,
        None,
    )


def test_unknown_source_address_gets_a_clear_403(launched: dict[str, Any]) -> None:
    with IMDSServer("127.0.0.1", 0, NOBODY.get) as server:
        host, port = server.address
        status, body = _http(host, port, "GET", "/latest/meta-data/instance-id")
    assert status == 403
    assert "No simulated instance has the address 127.0.0.1" in body


def test_second_server_on_another_loopback_address(launched: dict[str, Any]) -> None:
    if not _can_bind("127.0.0.2"):  # pragma: no cover
        pytest.skip("this host cannot bind 127.0.0.2")
    views = {"127.0.0.1": instance_view(launched["private"], None, REGION)}
    with IMDSServer("127.0.0.2", 0, views.get) as server:
        assert server.address[0] == "127.0.0.2"
        assert MetadataClient(server.url).get("instance-id") == launched["private"]["InstanceId"]


def test_bind_failure_is_a_sim_error() -> None:
    with IMDSServer("127.0.0.1", 0, NOBODY.get) as first:
        port = first.address[1]
        with pytest.raises(SimError, match=f"Cannot bind the metadata server to 127.0.0.1:{port}"):
            IMDSServer("127.0.0.1", port, NOBODY.get).start()


def test_stop_is_idempotent() -> None:
    server = IMDSServer("127.0.0.1", 0, NOBODY.get).start()
    server.stop()
    server.stop()


# --- a real client: AWS's ec2-metadata (Debian package amazon-ec2-utils) -------------
EC2_METADATA_OPTIONS = ["--instance-id", "--local-ipv4", "--public-hostname", "--availability-zone", "--public-keys", "--tags", "--reservation-id"]


def _replay_ec2_metadata(url: str) -> str:
    """Send the requests ec2-metadata sends (curl -f, token ttl 900) and format its output."""

    def call(method: str, path: str, headers: dict[str, str]) -> str:
        req = urllib.request.Request(url + path, method=method, headers=headers)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=5) as resp:
                return resp.read().decode()
        except urllib.error.HTTPError:
            return ""  # curl -s -f prints nothing on an HTTP error

    token = call("PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "900"})
    assert token, "the token request failed"
    h = {"X-aws-ec2-metadata-token": token}

    def metric(name: str, path: str) -> str:
        value = call("GET", "/latest/" + path, h)
        return f"{name}: {value or 'not available'}\n"

    out = metric("instance-id", "meta-data/instance-id")
    out += metric("local-ipv4", "meta-data/local-ipv4")
    out += metric("public-hostname", "meta-data/public-hostname")
    out += metric("placement", "meta-data/placement/availability-zone")
    out += "public-keys: \n"
    for entry in call("GET", "/latest/meta-data/public-keys/", h).split():
        index, keyname = entry.split("=", 1)
        fmt = call("GET", f"/latest/meta-data/public-keys/{index}/", h)
        out += f"keyname:{keyname}\nindex:{index}\nformat:{fmt}\nkey:(begins from next line)\n"
        out += call("GET", f"/latest/meta-data/public-keys/{index}/{fmt}", h) + "\n"
    out += "tags: \n"
    for tag in call("GET", "/latest/meta-data/tags/instance/", h).split():
        out += f"\t {tag}: {call('GET', '/latest/meta-data/tags/instance/' + tag, h)}\n"
    out += metric("reservation-id", "/meta-data/reservation-id")  # the tool's own double slash
    return out


def test_ec2_metadata_tool(two_instances: IMDSServer, launched: dict[str, Any], tmp_path: Path) -> None:
    """AWS's ec2-metadata reads the sim's metadata (the tool when installed, else its exact requests)."""
    tool = shutil.which("ec2-metadata")
    url = two_instances.url
    if tool and shutil.which("curl") and shutil.which("bash"):
        script = Path(tool).read_text()
        assert 'METADATA_BASEURL="http://169.254.169.254"' in script
        copy = tmp_path / "ec2-metadata"
        copy.write_text(script.replace('METADATA_BASEURL="http://169.254.169.254"', f'METADATA_BASEURL="{url}"'))
        env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "all_proxy")}
        r = subprocess.run(["bash", str(copy), *EC2_METADATA_OPTIONS], capture_output=True, text=True, timeout=30, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        out = r.stdout
    else:
        out = _replay_ec2_metadata(url)
    inst = launched["public"]
    assert f"instance-id: {inst['InstanceId']}\n" in out
    assert f"local-ipv4: {inst['PrivateIpAddress']}\n" in out
    assert f"public-hostname: {inst['PublicDnsName']}\n" in out
    assert f"placement: {inst['Placement']['AvailabilityZone']}\n" in out
    assert f"keyname:demo\nindex:0\nformat:openssh-key\nkey:(begins from next line)\n{launched['public_key']}\n" in out
    assert "\t Name: cephdemo\n" in out
    assert f"reservation-id: {launched['public_reservation']}\n" in out
    # It asked for a token once and used it (the instance requires tokens).
    assert two_instances.count(method="PUT") == 1
    assert two_instances.count(status=401) == 0
