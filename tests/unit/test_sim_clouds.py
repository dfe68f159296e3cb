"""``sim.clouds``: the clouds.yaml entry, the console's password line, the host's /etc/hosts block."""

from __future__ import annotations

import stat
from pathlib import Path

import yaml

from provision.openstack.addresses import Addresses
from provision.openstack.dashboard import admin_password_on, console_line
from provision.settings import Settings
from sim import clouds


def test_the_password_is_read_from_the_line_the_instance_prints() -> None:
    s = Settings()
    first = console_line(s, Addresses("10.77.0.5", "ec2-1-2-3-4.compute-1.amazonaws.com"), "old-Pa55word", "ab:cd")
    second = console_line(s, Addresses("10.77.0.6", "ec2-5-6-7-8.compute-1.amazonaws.com"), "n3w-Pa55word", None)
    console = f"[  OK  ] Started ssh.service\n{first}\nreboot\n{second}\nlogin:\n"
    assert admin_password_on(console) == "n3w-Pa55word"  # latest boot last
    assert admin_password_on("no such line\n") is None


def test_the_entry_names_keystone_by_the_public_name_over_tls() -> None:
    entry = clouds.render_entry(Settings(), "ec2-1-2-3-4.compute-1.amazonaws.com", "pw", "/x/ca.pem")
    auth = entry["auth"]
    assert isinstance(auth, dict)
    assert auth["auth_url"] == "https://ec2-1-2-3-4.compute-1.amazonaws.com:13000/v3"
    assert (auth["username"], auth["password"], auth["project_name"]) == ("admin", "pw", "admin")
    assert (entry["interface"], entry["region_name"], entry["cacert"]) == ("public", "RegionOne", "/x/ca.pem")


def test_merging_keeps_the_users_other_clouds() -> None:
    existing = yaml.safe_dump({"clouds": {"prod": {"auth": {"auth_url": "https://prod"}}}, "other": 1})
    merged = yaml.safe_load(clouds.merge_clouds_yaml(existing, "cephdemo-sim", {"auth": {"auth_url": "https://sim"}}))
    assert merged == {"clouds": {"prod": {"auth": {"auth_url": "https://prod"}}, "cephdemo-sim": {"auth": {"auth_url": "https://sim"}}}, "other": 1}
    again = yaml.safe_load(clouds.merge_clouds_yaml(clouds.merge_clouds_yaml("", "cephdemo-sim", {"a": 1}), "cephdemo-sim", {"a": 2}))
    assert again == {"clouds": {"cephdemo-sim": {"a": 2}}}


def test_the_hosts_block_is_replaced_then_removed_and_the_rest_untouched(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost\n")
    assert clouds.set_hosts_block("10.77.0.5", ["ec2-1-2-3-4.compute-1.amazonaws.com"], hosts)
    assert clouds.set_hosts_block("10.77.0.6", ["ec2-5-6-7-8.compute-1.amazonaws.com"], hosts)
    text = hosts.read_text()
    assert text.count(clouds.BEGIN) == 1 and "10.77.0.6 ec2-5-6-7-8.compute-1.amazonaws.com\n" in text and "10.77.0.5" not in text
    assert not clouds.set_hosts_block("10.77.0.6", ["ec2-5-6-7-8.compute-1.amazonaws.com"], hosts)  # unchanged
    assert clouds.set_hosts_block(None, [], hosts)
    assert hosts.read_text() == "127.0.0.1 localhost\n::1 localhost ip6-localhost\n"
    assert not clouds.set_hosts_block(None, [], hosts)


def test_the_file_with_the_password_is_the_owners_alone(tmp_path: Path) -> None:
    path = tmp_path / "d" / "clouds.yaml"
    clouds.write_private(path, "clouds: {}\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
