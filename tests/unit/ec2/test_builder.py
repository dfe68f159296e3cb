"""The builder over SSH (one function for AWS and the sim) and the build on AWS as the `build.ami` task runs it."""

from __future__ import annotations

import io
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from provision.ec2 import builder
from provision.ec2.api import check_region
from provision.ec2.plan import BuilderHost, BuildOptions
from provision.exceptions import ConfigError
from provision.image.updates import Package
from provision.profiles import DEBIAN_12, UBUNTU_24_04, record_proven
from provision.settings import Settings
from provision.target.base import Target

HOST = BuilderHost(
    instance_id="i-12345678",
    region="us-east-1",
    public_ip="203.0.113.9",
    private_ip="10.0.0.9",
    public_dns="",
    user="admin",
    key_path="/tmp/builder_ed25519",
)
SETTINGS = Settings().replace(ssh_retries=7, ssh_retry_delay_s=0.5, ssh_connect_timeout_s=3.0)


UPGRADE = "Calculating upgrade...\n5 upgraded, 1 newly installed, 0 to remove and 0 not upgraded.\n"
PACKAGES = "installed\topenssl\t3.0.13-1~deb12u1\tamd64\ninstalled\tceph-mon\t16.2.15+ds-0+deb12u1\tamd64\n"


class FakeTarget(Target):
    """Stands in for the SSH target: records how it was made, whether it is open and every command
    (the real ``Target.run`` quotes them); answers apt and dpkg-query as the builder would."""

    made: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    last: FakeTarget | None = None
    name = "ssh://fake"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        FakeTarget.made.append((args, kwargs))
        FakeTarget.last = self
        self.open = False
        self.commands: list[str] = []

    def __enter__(self) -> FakeTarget:
        self.open = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.open = False

    def _exec(self, command: str, stdin: bytes | None, timeout: float | None) -> tuple[int, bytes, bytes]:
        assert self.open, f"{command!r} run on a closed connection"
        self.commands.append(command)
        out = UPGRADE if "full-upgrade" in command else PACKAGES if command.startswith("dpkg-query") else ""
        return 0, out.encode(), b""


@pytest.fixture
def fake_ssh(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    FakeTarget.made = []
    monkeypatch.setattr(builder, "SSHTarget", FakeTarget)
    return FakeTarget.made


def test_builder_target_takes_the_key_file_and_the_settings_ssh_bounds(fake_ssh: list[Any]) -> None:
    def log(line: str) -> None:
        pass

    builder.builder_target(HOST, SETTINGS, log)
    ((args, kwargs),) = fake_ssh
    assert args == ("203.0.113.9",)
    assert kwargs == {
        "user": "admin",
        "port": 22,
        "pkey": None,
        "key_filename": "/tmp/builder_ed25519",
        "retries": 7,
        "retry_delay": 0.5,
        "connect_timeout": 3.0,
        "log": log,
    }


def test_builder_target_prefers_the_key_in_memory_and_the_private_address(fake_ssh: list[Any]) -> None:
    host = BuilderHost(**{**HOST.__dict__, "pkey": "PKEY", "private": True})
    builder.builder_target(host, SETTINGS)
    ((args, kwargs),) = fake_ssh
    assert args == ("10.0.0.9",) and kwargs["pkey"] == "PKEY" and kwargs["key_filename"] is None


def test_provision_builder_updates_prepares_and_lists_over_one_open_connection(fake_ssh: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []

    def prepare(t: FakeTarget, s: Settings, p: str, log: Any) -> None:
        calls.append((t.open, s, p, log, [c.split()[-1] for c in t.commands]))
        t.commands.clear()

    monkeypatch.setattr(builder, "prepare_image", prepare)
    logs: list[str] = []
    packages = builder.provision_builder(HOST, SETTINGS, "ubuntu-24.04", log=logs.append)
    assert len(fake_ssh) == 1
    # The updates before the provisioning (apt-get update, full-upgrade, clean), the package list after it.
    assert calls == [(True, SETTINGS, "ubuntu-24.04", logs.append, ["update", "full-upgrade", "clean"])]
    assert FakeTarget.last is not None and [c.split()[0] for c in FakeTarget.last.commands] == ["dpkg-query"]
    assert packages == [Package("ceph-mon", "16.2.15+ds-0+deb12u1", "amd64"), Package("openssl", "3.0.13-1~deb12u1", "amd64")]
    assert any("security updates" in line and "5 upgraded, 1 newly installed" in line for line in logs)


def test_choose_profile_asked_else_the_only_proven_else_the_default(tmp_path: Path) -> None:
    record = tmp_path / "sim-proven.json"
    assert builder.choose_profile(None, "debian-12", str(record)) == "debian-12"
    record_proven(UBUNTU_24_04, record)
    assert builder.choose_profile(None, "debian-12", str(record)) == "ubuntu-24.04"
    assert builder.choose_profile("debian-12", "debian-12", str(record)) == "debian-12"
    record_proven(DEBIAN_12, record)
    assert builder.choose_profile(None, "ubuntu-24.04", str(record)) == "ubuntu-24.04"


def test_discover_caller_ip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BytesIO(b"198.51.100.9\n"))
    assert builder.discover_caller_ip() == "198.51.100.9"


def test_discover_caller_ip_failure_says_how_to_give_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(url: str, timeout: float) -> Any:
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    with pytest.raises(ConfigError, match=r"Cannot discover your public address \(network is unreachable\)") as e:
        builder.discover_caller_ip()
    assert "--caller-ip" in (e.value.hint or "")


def test_check_region(aws_credentials: None) -> None:
    check_region("eu-west-1")
    with pytest.raises(ConfigError, match="Unknown AWS region 'us-esat-1'") as e:
        check_region("us-esat-1")
    assert e.value.hint == "e.g. us-east-1, eu-west-1"


@pytest.fixture
def fake_build(aws_credentials: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """build_ami with the build, the address lookup and the provisioning replaced by recorders."""
    monkeypatch.chdir(tmp_path)  # no proven record: the settings' profile
    seen: dict[str, Any] = {"provisioned": []}

    def build(options: BuildOptions, provision: Any, *, test_stage: Any, log: Any) -> str:
        seen["options"], seen["test_stage"] = options, test_stage
        provision(HOST)
        return "result"

    monkeypatch.setattr(builder, "build", build)
    monkeypatch.setattr(builder, "discover_caller_ip", lambda: "198.51.100.9")
    monkeypatch.setattr(builder, "provision_builder", lambda host, settings, profile, log: seen["provisioned"].append((host, profile)))
    return seen


def test_build_ami_admits_the_discovered_caller_and_provisions_the_chosen_profile(fake_build: dict[str, Any]) -> None:
    settings = SETTINGS.replace(region="eu-west-1", profile="ubuntu-24.04")
    assert builder.build_ami(settings, public=True, regions=["eu-central-1"], ami_name="coa-x") == "result"
    opts = fake_build["options"]
    assert (opts.region, opts.profile, opts.caller_ip, opts.allow_cidr) == ("eu-west-1", "ubuntu-24.04", "198.51.100.9", None)
    assert (opts.public, list(opts.regions), opts.ami_name, opts.ssh_attempts) == (True, ["eu-central-1"], "coa-x", 7)
    assert fake_build["provisioned"] == [(HOST, "ubuntu-24.04")]


def test_build_ami_with_a_cidr_or_an_address_looks_nothing_up(fake_build: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(builder, "discover_caller_ip", lambda: pytest.fail("the caller's address was looked up"))
    builder.build_ami(SETTINGS, allow_cidr="198.51.100.0/24", caller_ip="203.0.113.7")
    assert (fake_build["options"].caller_ip, fake_build["options"].allow_cidr) == (None, "198.51.100.0/24")
    builder.build_ami(SETTINGS, caller_ip="203.0.113.7", profile="ubuntu-24.04")
    assert (fake_build["options"].caller_ip, fake_build["options"].profile) == ("203.0.113.7", "ubuntu-24.04")
    opts = fake_build["options"]
    assert (opts.allow_world, opts.trust_source_owner) == (False, False)
    builder.build_ami(SETTINGS, allow_cidr="0.0.0.0/0", allow_world=True, source_ami="ami-12345678", trust_source_owner=True)
    opts = fake_build["options"]
    assert (opts.allow_cidr, opts.allow_world, opts.source_ami, opts.trust_source_owner) == ("0.0.0.0/0", True, "ami-12345678", True)


def test_build_ami_refuses_an_unknown_region_before_anything_else(fake_build: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(builder, "discover_caller_ip", lambda: pytest.fail("the caller's address was looked up"))
    with pytest.raises(ConfigError, match="Unknown AWS region 'mars-1'"):
        builder.build_ami(SETTINGS.replace(region="mars-1"))
    assert "options" not in fake_build
