"""What the user asks for, checked and resolved into a plan (pure: no API calls)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from provision.ec2.plan import (
    BuildOptions,
    cidr_warning,
    make_plan,
    ssh_cidr,
    temp_image_name,
    validate_ami_id,
    validate_ami_name,
)
from provision.exceptions import ConfigError
from provision.profiles import DEBIAN_12
from provision.settings import Settings

from .helpers import (
    CALLER,
    REGIONS,
    plan_for,
)


@pytest.mark.parametrize("ami_id", ["ami-12345678", "ami-0123456789abcdef0", "ami-0123456789abcdef"])
def test_valid_ami_ids(ami_id: str) -> None:
    assert validate_ami_id(ami_id) == ami_id


@pytest.mark.parametrize(
    "ami_id", ["", "ami-1234567", "ami-0123456789abcdef01", "AMI-12345678", "ami-1234567g", "i-12345678", " ami-12345678"]
)
def test_malformed_ami_ids(ami_id: str) -> None:
    with pytest.raises(ConfigError, match="Malformed AMI id"):
        validate_ami_id(ami_id)


@pytest.mark.parametrize(
    ("name", "ok"),
    [("abc", True), ("ceph (demo) [v1] 1.0/x-y_z'@", True), ("ab", False), ("x" * 129, False), ("bad*name", False), ("tab\tname", False)],
)
def test_ami_names(name: str, ok: bool) -> None:
    if ok:
        assert validate_ami_name(name) == name
    else:
        with pytest.raises(ConfigError, match="Invalid AMI name"):
            validate_ami_name(name)


@pytest.mark.parametrize(
    ("caller", "cidr", "want"),
    [
        ("203.0.113.7", None, "203.0.113.7/32"),
        ("2001:db8::7", None, "2001:db8::7/128"),
        ("203.0.113.7", "198.51.100.0/24", "198.51.100.0/24"),
        (None, "2001:db8::/32", "2001:db8::/32"),
    ],
)
def test_ssh_cidr(caller: str | None, cidr: str | None, want: str) -> None:
    assert ssh_cidr(caller, cidr) == want


@pytest.mark.parametrize("world", ["0.0.0.0/0", "::/0"])
def test_the_whole_internet_only_with_allow_world(world: str) -> None:
    # Issue 14: 0.0.0.0/0 (formerly taken silently) is refused unless asked for by name.
    with pytest.raises(ConfigError, match=r"whole internet") as e:
        ssh_cidr("203.0.113.7", world)
    assert "--allow-world" in (e.value.hint or "")
    assert ssh_cidr("203.0.113.7", world, allow_world=True) == world
    with pytest.raises(ConfigError, match="whole internet"):
        plan_for(Path("."), allow_cidr=world)
    assert plan_for(Path("."), allow_cidr=world, allow_world=True).ssh_cidr == world


@pytest.mark.parametrize(
    ("cidr", "warning"),
    [
        ("203.0.113.7/32", None),
        ("2001:db8::7/128", None),
        ("198.51.100.0/24", "warning: SSH to the builder is admitted from 198.51.100.0/24 (256 addresses), not from a single address"),
        ("203.0.113.6/31", "warning: SSH to the builder is admitted from 203.0.113.6/31 (2 addresses), not from a single address"),
        ("0.0.0.0/0", "warning: SSH to the builder is open to the whole internet (0.0.0.0/0) for the length of the build"),
        ("::/0", "warning: SSH to the builder is open to the whole internet (::/0) for the length of the build"),
    ],
)
def test_a_cidr_wider_than_one_address_is_warned_about_on_one_line(cidr: str, warning: str | None) -> None:
    assert cidr_warning(cidr) == warning
    if warning is not None:
        assert "\n" not in warning


def test_temp_image_name_differs_and_fits() -> None:
    assert temp_image_name("coa-test-image", "0f0f0f0f-1111") == "coa-test-image-new-0f0f0f0f"
    long = temp_image_name("x" * 128, "0f0f0f0f-1111")
    assert len(long) == 128 and long.endswith("-new-0f0f0f0f") and validate_ami_name(long) == long


@pytest.mark.parametrize(
    ("caller", "cidr"), [(None, None), ("", None), ("not-an-ip", None), ("203.0.113.7", "198.51.100.1/24"), (None, "nonsense")]
)
def test_ssh_cidr_refuses(caller: str | None, cidr: str | None) -> None:
    with pytest.raises(ConfigError):
        ssh_cidr(caller, cidr)


def test_make_plan_resolves_defaults(tmp_path: Path) -> None:
    plan = make_plan(BuildOptions(caller_ip=CALLER), available_regions=REGIONS, build_id="b", now=1_700_000_000)
    assert plan.instance_type == "m1.xlarge"
    assert plan.region == "us-east-1"
    assert plan.profile is DEBIAN_12
    assert plan.ami_name == "ceph-openstack-debian-12-20231114-221320"
    assert plan.ssh_cidr == "203.0.113.7/32"
    assert plan.on_error == "cleanup" and not plan.public and not plan.force


def test_make_plan_dedupes_copy_regions(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, regions=["eu-west-1", "us-east-1", "eu-west-1", "eu-central-1"])
    assert plan.copy_regions == ("eu-west-1", "eu-central-1")
    assert plan.regions == ("us-east-1", "eu-west-1", "eu-central-1")


def test_make_plan_takes_regions_as_a_comma_separated_string(tmp_path: Path) -> None:
    assert plan_for(tmp_path, regions="eu-west-1, eu-central-1,").copy_regions == ("eu-west-1", "eu-central-1")


def test_options_from_settings() -> None:
    settings = Settings().replace(instance_type="m5.xlarge", region="eu-west-1", wait_attempts=7)
    opts = BuildOptions.from_settings(settings, public=True, ami_name=None)
    assert (opts.instance_type, opts.region, opts.wait_attempts, opts.public, opts.ami_name) == ("m5.xlarge", "eu-west-1", 7, True, None)
    assert opts.profile == "debian-12"


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"region": "mars-1"}, "Unknown EC2 region 'mars-1'"),
        ({"regions": ["eu-west-1", "moon-2"]}, "Unknown EC2 region 'moon-2'"),
        ({"on_error": "ignore"}, "Unknown on_error"),
        ({"source_ami": "ami-xyz"}, "Malformed AMI id"),
        ({"ami_name": "x"}, "Invalid AMI name"),
        ({"caller_ip": None}, "No address to admit SSH from"),
        ({"key_file": "/nonexistent/id_ed25519"}, "does not exist"),
        ({"profile": "centos-7"}, "Unknown profile"),
        ({"wait_attempts": 0}, "at least 1"),
    ],
)
def test_make_plan_refuses(tmp_path: Path, overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        plan_for(tmp_path, **overrides)
