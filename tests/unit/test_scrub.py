"""The scrub and the sshd policy, offline: parsers and plans as tables, the scrub over a temp tree.

Secret-looking test data is assembled at run time (see ``test_audit``).
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from provision.image.scrub import Observed, ScrubStep, parse_observation, password_locked, plan, scrub
from provision.image.sshd import (
    NEUTRALISED,
    SSHD_DROPIN,
    SSHD_MAIN,
    includes_dropin,
    render_sshd_dropin,
    sshd_config_changes,
    sshd_problems,
)
from provision.settings import Settings
from provision.target.local import LocalTarget
from tests.unit.test_audit import SECRET_VALUE, _pem, found, plant

# --- scrub: the pure parts ----------------------------------------------------------
DEBIAN_MAIN = textwrap.dedent(
    """\
    # This is the sshd server system-wide configuration file.
    Include /etc/ssh/sshd_config.d/*.conf
    #PermitRootLogin prohibit-password
    KbdInteractiveAuthentication no
    UsePAM yes
    Subsystem sftp /usr/lib/openssh/sftp-server
    """
)


@pytest.mark.parametrize(
    "files, changed, checks",
    [
        # Debian 12 / Ubuntu 24.04 as shipped: only the drop-in is written
        ({SSHD_MAIN: DEBIAN_MAIN}, {SSHD_DROPIN}, {}),
        # already done: nothing
        ({SSHD_MAIN: DEBIAN_MAIN, SSHD_DROPIN: render_sshd_dropin()}, set(), {}),
        # no sshd: nothing
        ({}, set(), {}),
        # an earlier, weaker drop-in is neutralised; a stricter one is kept
        (
            {SSHD_MAIN: DEBIAN_MAIN, "/etc/ssh/sshd_config.d/10-x.conf": "PasswordAuthentication yes\nPermitRootLogin no\n"},
            {SSHD_DROPIN, "/etc/ssh/sshd_config.d/10-x.conf"},
            {"/etc/ssh/sshd_config.d/10-x.conf": [NEUTRALISED + " PasswordAuthentication yes", "PermitRootLogin no"]},
        ),
        # weaker settings in the main file, also in a Match block
        (
            {SSHD_MAIN: DEBIAN_MAIN + "PermitRootLogin yes\nMatch User bob\n  PasswordAuthentication=yes\n"},
            {SSHD_DROPIN, SSHD_MAIN},
            {SSHD_MAIN: [NEUTRALISED + " PermitRootLogin yes", NEUTRALISED + " PasswordAuthentication=yes"]},
        ),
        # no Include at all: the directory is included first
        (
            {SSHD_MAIN: "Port 22\nPermitRootLogin prohibit-password\n"},
            {SSHD_DROPIN, SSHD_MAIN},
            {SSHD_MAIN: ["Include /etc/ssh/sshd_config.d/*.conf", "PermitRootLogin prohibit-password"]},
        ),
        # an Include inside a Match block does not count: our file is included first
        (
            {SSHD_MAIN: "Match User x\n  Include /etc/ssh/sshd_config.d/*.conf\n"},
            {SSHD_DROPIN, SSHD_MAIN},
            {SSHD_MAIN: [f"Include {SSHD_DROPIN}"]},
        ),
    ],
)
def test_sshd_config_changes(files: dict[str, str], changed: set[str], checks: dict[str, list[str]]) -> None:
    changes = sshd_config_changes(files)
    assert set(changes) == changed
    for path, lines in checks.items():
        for line in lines:
            assert line in changes[path].splitlines(), (path, line, changes[path])
    if SSHD_MAIN in changes:
        assert includes_dropin(changes[SSHD_MAIN])
        assert changes[SSHD_MAIN].index("Include") < changes[SSHD_MAIN].find("Match") or "Match" not in changes[SSHD_MAIN]
    # applying the changes converges
    assert sshd_config_changes({**files, **changes}) == {}


def test_sshd_dropin_says_the_policy() -> None:
    lines = render_sshd_dropin().splitlines()
    assert "PermitRootLogin prohibit-password" in lines and "PasswordAuthentication no" in lines


@pytest.mark.parametrize(
    "effective, problems",
    [
        ("port 22\npermitrootlogin without-password\npasswordauthentication no\nkbdinteractiveauthentication no\n", []),
        ("permitrootlogin no\npasswordauthentication no\n", []),
        ("permitrootlogin yes\npasswordauthentication yes\n", ["PermitRootLogin yes", "PasswordAuthentication yes"]),
    ],
)
def test_sshd_problems(effective: str, problems: list[str]) -> None:
    assert sshd_problems(effective) == problems


@pytest.mark.parametrize(
    "status, locked",
    [(None, True), ("!:1", True), ("*:1", True), ("!:107", True), ("$:107", False), (":0", False), ("!:0", False)],
)
def test_password_locked(status: str | None, locked: bool) -> None:
    assert password_locked(status) is locked


def test_parse_observation_and_plan_table() -> None:
    out = (
        "@@names\x00600\t10\t/r/root/.bash_history\x00600\t90\t/r/etc/ssh/ssh_host_rsa_key\x00"
        "600\t9\t/r/home/a/.aws/credentials\x00"
        "@@journal\x00/r/var/log/journal/abc\x00"
        "@@logs\x000\t/r/var/log/btmp\x00120\t/r/var/log/dpkg.log\x0010\t/r/var/log/syslog.2.gz\x00"
        "@@tmp\x00/r/tmp/x\x00@@apt\x00@@machine-id\x0033\x00@@dbus-machine-id\x00present\x00"
        "@@root-password\x00$:98\x00"
        "@@sshd-files\x00F/r/etc/ssh/sshd_config\x00C" + DEBIAN_MAIN + "\x00F/r/etc/ssh/sshd_config.d/empty.conf\x00C\x00"
        "@@end\x00"
    )
    obs = parse_observation(out, "/r")
    assert obs.names == {"shell-history": ["/root/.bash_history"], "ssh-host-key": ["/etc/ssh/ssh_host_rsa_key"]}
    assert obs.logs == [("/var/log/btmp", 0), ("/var/log/dpkg.log", 120), ("/var/log/syslog.2.gz", 10)]
    assert obs.sshd_files == {SSHD_MAIN: DEBIAN_MAIN, "/etc/ssh/sshd_config.d/empty.conf": ""}
    assert obs.machine_id_size == 33 and obs.dbus_machine_id and obs.root_password == "$:98"
    summaries = [a.summary for a in plan(obs, "/r", live=False)]
    assert summaries == [
        "removed shell histories: /root/.bash_history",
        "removed 1 SSH host key files (first boot makes new ones)",
        f"wrote {SSHD_DROPIN}",
        "locked root's password",
        "removed temporary files: /tmp/x",
        "emptied /etc/machine-id (a new id on first boot)",
        "removed /var/lib/dbus/machine-id",
        "removed rotated logs: /var/log/syslog.2.gz",
        "truncated logs: /var/log/dpkg.log",
        "removed the journal (1 entries of /var/log/journal)",
    ]
    assert all("/r/" in (a.command or "/r/") for a in plan(obs, "/r", live=False))
    assert plan(Observed(machine_id_size=0), "/", live=True) == []  # nothing seen, nothing to do


# --- scrub over a temp tree ---------------------------------------------------------
def test_scrub_tree_then_audit(tmp_path: Path) -> None:
    t = LocalTarget()
    root = str(tmp_path)
    plant(tmp_path, SSHD_MAIN, DEBIAN_MAIN, 0o644)
    plant(tmp_path, "/etc/ssh/sshd_config.d/10-x.conf", "PasswordAuthentication yes\n", 0o644)
    plant(tmp_path, "/etc/ssh/ssh_host_ed25519_key", _pem("OPENSSH "))
    plant(tmp_path, "/etc/shadow", "root:$6$salt$hash:19000:0:99999:7:::\nadmin:!:19000::::::\n", 0o640)
    plant(tmp_path, "/etc/machine-id", "0123456789abcdef0123456789abcdef\n", 0o444)
    plant(tmp_path, "/root/.bash_history", "secret commands\n")
    plant(tmp_path, "/home/admin/.ssh/authorized_keys", "ssh-ed25519 AAAA build\n")
    keyring = plant(tmp_path, "/etc/ceph/ceph.client.images.keyring", "[client.images]\n\tkey = AQBJmVxmAAAAABAAk3Qq5qB7Zl2sZ0Vf3Gc9xw==\n", 0o640)
    openrc = plant(tmp_path, "/root/openrc", f"export OS_PASSWORD={SECRET_VALUE}\n", 0o644)
    fernet = plant(tmp_path, "/etc/keystone/fernet-keys/0", "x" * 44)
    plant(tmp_path, "/var/log/dpkg.log", "installed\n", 0o644)
    plant(tmp_path, "/var/log/journal/abc/system.journal", "x", 0o640)
    plant(tmp_path, "/tmp/build.tar", "x", 0o644)
    plant(tmp_path, "/tmp/systemd-private-1-x/tmp/keep", "x", 0o644)
    plant(tmp_path, "/var/lib/apt/lists/deb.debian.org_dists_bookworm_InRelease", "x", 0o644)
    plant(tmp_path, "/var/lib/apt/lists/lock", "", 0o640)
    leftover_key = plant(tmp_path, "/opt/x/key.pem", _pem())

    before = found(tmp_path)
    assert {k for _, k in before} >= {"ssh-host-key", "shell-history", "authorized-keys", "cephx-keyring", "machine-id", "private-key"}
    assert {(openrc, "world-readable-secret"), (fernet, "build-secret")} <= before

    first = ScrubStep(root=root).apply(t, Settings())
    assert first.changed and first.name == "scrub"
    assert SECRET_VALUE not in first.detail and "AQBJ" not in first.detail
    second = scrub(t, Settings(), root)
    assert not second.changed and second.detail.startswith("already clean")

    # what the scrub leaves by design is still reported
    assert found(tmp_path) == {(leftover_key, "private-key"), (keyring, "cephx-keyring")}
    assert not (tmp_path / "root/openrc").exists() and not (tmp_path / "etc/keystone/fernet-keys/0").exists()
    assert (tmp_path / "etc/machine-id").read_bytes() == b"" and (tmp_path / "etc/machine-id").exists()
    assert (tmp_path / "var/log/dpkg.log").read_bytes() == b""
    assert (tmp_path / "var/log/journal").is_dir() and not any((tmp_path / "var/log/journal").iterdir())
    assert (tmp_path / "tmp/systemd-private-1-x/tmp/keep").exists() and not (tmp_path / "tmp/build.tar").exists()
    assert sorted(os.listdir(tmp_path / "var/lib/apt/lists")) == ["lock"]
    # root is locked and keeps no hash: a locked hash (!$6$...) is still a finding of the audit
    assert (tmp_path / "etc/shadow").read_text().startswith("root:!:")
    assert (tmp_path / SSHD_DROPIN.lstrip("/")).read_text() == render_sshd_dropin()
    assert (tmp_path / "etc/ssh/sshd_config.d/10-x.conf").read_text().startswith(NEUTRALISED)


def test_scrub_dry_run_changes_nothing(tmp_path: Path) -> None:
    plant(tmp_path, "/root/.bash_history", "x\n")
    result = scrub(LocalTarget(), None, str(tmp_path), dry_run=True)
    assert not result.changed and result.detail.startswith("would: removed shell histories")
    assert (tmp_path / "root/.bash_history").exists()


@pytest.mark.parametrize(
    "observed, live, summaries",
    [
        (Observed(machine_id_size=0, syslog=["rsyslog.service"]), True, ["stopped rsyslog.service until the next boot (no more builder logs)"]),
        (Observed(machine_id_size=0, syslog=["rsyslog.service"]), False, []),  # a tree has no running daemons
        (Observed(machine_id_size=0, cloud_init=True, cloud_init_state=True), True, ["cleaned cloud-init's instance state and logs"]),
        (Observed(machine_id_size=0, cloud_init=True, cloud_init_state=False), True, []),
        (Observed(machine_id_size=None), False, ["created an empty /etc/machine-id"]),
        (Observed(machine_id_size=0, root_password=":0"), True, ["locked root's password"]),
        (Observed(machine_id_size=0, apt=["/var/cache/apt/pkgcache.bin"]), True, ["apt-get clean", "removed package caches: /var/cache/apt/pkgcache.bin"]),
    ],
)
def test_plan_table(observed: Observed, live: bool, summaries: list[str]) -> None:
    assert [a.summary for a in plan(observed, "/", live)] == summaries


# --- password hashes and the Erlang cookie ------------------------------------------
HASH = "$6$" + "salt$" + "h" * 86


def test_scrub_removes_every_password_hash(tmp_path: Path) -> None:
    shadow = f"root:{HASH}:19000:0:99999:7:::\nadmin:!:19000::::::\nbob:!{HASH}:19000::::::\nsvc.user:{HASH}:1::::::\n"
    plant(tmp_path, "/etc/shadow", shadow, 0o640)
    plant(tmp_path, "/etc/shadow-", shadow, 0o600)
    plant(tmp_path, "/etc/gshadow", f"root:*::\nstaff:{HASH}::\n", 0o640)
    plant(tmp_path, "/var/backups/shadow.bak", shadow, 0o600)
    plant(tmp_path, "/etc/security/opasswd", f"bob:1001:1:{HASH}\n", 0o600)
    assert {k for _, k in found(tmp_path)} == {"password-hash"}
    result = scrub(LocalTarget(), Settings(), str(tmp_path))
    assert "bob" in result.detail and HASH not in result.detail
    assert found(tmp_path) == set()
    lines = (tmp_path / "etc/shadow").read_text().splitlines()
    assert lines == ["root:!:19000:0:99999:7:::", "admin:!:19000::::::", "bob:!:19000::::::", "svc.user:!:1::::::"]
    assert (tmp_path / "etc/shadow").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "etc/security/opasswd").read_text() == ""
    assert not scrub(LocalTarget(), Settings(), str(tmp_path)).changed


def test_parse_observation_of_hashes_and_broker() -> None:
    out = "@@names\x00@@password-hashes\x00root,bob\t/r/etc/shadow\x00bob\t/r/var/backups/shadow.bak\x00@@broker\x00active\x00@@end\x00"
    obs = parse_observation(out, "/r")
    assert obs.hashes == {"/etc/shadow": ["root", "bob"], "/var/backups/shadow.bak": ["bob"]}
    assert obs.broker_active


@pytest.mark.parametrize(
    "live, broker_active, removed",
    [(False, False, True), (True, False, True), (True, True, False)],  # the broker's CLI needs the cookie to stop it
)
def test_erlang_cookie_goes_once_the_broker_is_stopped(live: bool, broker_active: bool, removed: bool) -> None:
    obs = Observed(machine_id_size=0, names={"erlang-cookie": ["/var/lib/rabbitmq/.erlang.cookie"]}, broker_active=broker_active)
    summaries = [a.summary for a in plan(obs, "/", live)]
    assert any("Erlang cookie" in s for s in summaries) is removed


def test_scrub_removes_the_cookie_from_a_tree(tmp_path: Path) -> None:
    plant(tmp_path, "/etc/machine-id", "", 0o444)
    plant(tmp_path, "/var/lib/rabbitmq/.erlang.cookie", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", 0o400)
    assert found(tmp_path) == {("/var/lib/rabbitmq/.erlang.cookie", "openstack-secret")}
    scrub(LocalTarget(), Settings(), str(tmp_path))
    assert not (tmp_path / "var/lib/rabbitmq/.erlang.cookie").exists() and found(tmp_path) == set()
