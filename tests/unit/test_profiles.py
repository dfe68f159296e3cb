"""Distribution profiles and the simulation's proven record."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from provision.exceptions import ConfigError
from provision.profiles import (
    DEBIAN_12,
    PROFILES,
    UBUNTU_24_04,
    Profile,
    get_profile,
    is_proven,
    load_proven,
    profile_names,
    record_proven,
    resolve_profile,
)


@pytest.mark.parametrize(
    ("name", "user", "owner", "pattern", "sim_base"),
    [
        ("debian-12", "admin", "136693071363", "debian-12-amd64-*", "debootstrap:bookworm"),
        ("ubuntu-24.04", "ubuntu", "099720109477", "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*", "ubuntu:24.04"),
    ],
)
def test_profiles_describe_their_distribution(name: str, user: str, owner: str, pattern: str, sim_base: str) -> None:
    p = get_profile(name)
    assert (p.name, p.login_user, p.source_owner, p.source_name_pattern, p.sim_base_image) == (name, user, owner, pattern, sim_base)
    assert p.architecture == "x86_64"
    assert p.python3 == "/usr/bin/python3"
    assert p.display_name


def test_profiles_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEBIAN_12.login_user = "root"  # type: ignore[misc]


def test_unknown_profile_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as e:
        get_profile("centos-7")
    assert "centos-7" in e.value.message
    assert e.value.hint is not None and "debian-12" in e.value.hint and "ubuntu-24.04" in e.value.hint


def test_profile_names_and_resolve() -> None:
    assert profile_names() == ("debian-12", "ubuntu-24.04")
    assert set(PROFILES) == set(profile_names())
    assert resolve_profile("ubuntu-24.04") is UBUNTU_24_04
    custom = dataclasses.replace(DEBIAN_12, source_owner="self")
    assert resolve_profile(custom) is custom
    assert isinstance(custom, Profile)


def test_nothing_is_proven_without_a_record(tmp_path: Path) -> None:
    path = tmp_path / "sim-proven.json"
    assert load_proven(path) == {}
    assert not is_proven("debian-12", path)


def test_record_proven_then_is_proven(tmp_path: Path) -> None:
    path = tmp_path / "build" / "sim-proven.json"
    written = record_proven(DEBIAN_12, path, detail={"instance_id": "i-1234567890abcdef0"}, now=1_700_000_000)
    assert written == path
    assert is_proven("debian-12", path)
    assert is_proven(DEBIAN_12, path)
    assert not is_proven("ubuntu-24.04", path)
    data = json.loads(path.read_text())
    entry = data["profiles"]["debian-12"]
    assert entry["proven_at"] == "2023-11-14T22:13:20Z"
    assert entry["proven_at_unix"] == 1_700_000_000
    assert entry["sim_base_image"] == "debootstrap:bookworm"
    assert entry["instance_id"] == "i-1234567890abcdef0"


def test_record_proven_keeps_other_profiles(tmp_path: Path) -> None:
    path = tmp_path / "sim-proven.json"
    record_proven("debian-12", path)
    record_proven("ubuntu-24.04", path)
    assert set(load_proven(path)) == {"debian-12", "ubuntu-24.04"}
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_corrupt_record_is_a_clear_error_and_is_replaced_by_the_next_record(tmp_path: Path) -> None:
    path = tmp_path / "sim-proven.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError) as e:
        is_proven("debian-12", path)
    assert str(path) in e.value.message
    record_proven("debian-12", path)
    assert is_proven("debian-12", path)


def test_record_proven_refuses_an_unknown_profile(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        record_proven("arch-rolling", tmp_path / "p.json")
    assert not (tmp_path / "p.json").exists()
