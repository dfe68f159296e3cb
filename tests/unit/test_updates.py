"""The distribution's updates on the builder and its package list: the command lines and parsers as
data, the step against a Target that answers like apt (apt itself is never run here), and the
package list read from this machine's real dpkg database (a read-only query)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess

import pytest

from provision.exceptions import CommandFailed
from provision.image.updates import (
    UPDATES_STEP,
    Package,
    UpgradeSummary,
    apply_updates,
    installed_packages,
    package_list_command,
    parse_packages,
    parse_upgrade_summary,
    update_command,
    upgrade_command,
)
from provision.settings import Settings
from provision.target.base import Target
from provision.target.local import LocalTarget

# What apt-get 2.6 (bookworm) prints for a full-upgrade, trimmed.
APT_26_UPGRADE = """\
Reading package lists...
Building dependency tree...
Reading state information...
Calculating upgrade...
The following NEW packages will be installed:
  linux-image-6.1.0-22-cloud-amd64
The following packages will be upgraded:
  libssl3 openssl openssh-client
3 upgraded, 1 newly installed, 0 to remove and 0 not upgraded.
Need to get 71.2 MB of archives.
"""
# apt 2.9 on (trixie, Ubuntu 24.10) prints a summary block instead.
APT_29_UPGRADE = """\
Upgrading:
  libssl3t64  openssl
Summary:
  Upgrading: 2, Installing: 0, Removing: 1, Not Upgrading: 4
  Download size: 3,410 kB
"""
NOTHING = "Calculating upgrade...\n0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n"
PHASED = "Calculating upgrade...\n0 upgraded, 0 newly installed, 0 to remove and 2 not upgraded.\n"

DPKG_QUERY = (
    "installed\tzlib1g\t1:1.2.13.dfsg-1\tamd64\n"
    "installed\tadduser\t3.134\tall\n"
    "config-files\tlinux-image-6.1.0-18-cloud-amd64\t6.1.76-1\tamd64\n"
    "half-installed\tbroken\t1.0\tamd64\n"
    "installed\tlibc6\t2.36-9+deb12u7\ti386\n"
    "installed\tlibc6\t2.36-9+deb12u7\tamd64\n"
)


class AptLike(Target):
    """A target that records every command line and answers apt and dpkg-query from a table."""

    name = "apt-like"

    def __init__(self, upgrade_output: str = APT_26_UPGRADE, fail: str | None = None) -> None:
        self.answers = {"full-upgrade": upgrade_output, "dpkg-query": DPKG_QUERY}
        self.fail = fail
        self.commands: list[tuple[str, float | None]] = []

    def _exec(self, command: str, stdin: bytes | None, timeout: float | None) -> tuple[int, bytes, bytes]:
        self.commands.append((command, timeout))
        if self.fail and self.fail in command:
            return 100, b"", b"E: Sub-process /usr/bin/dpkg returned an error code (1)\n"
        for needle, out in self.answers.items():
            if needle in command:
                return 0, out.encode(), b""
        return 0, b"", b""


def test_the_command_lines_are_non_interactive_and_keep_old_config_files() -> None:
    env = ["env", "DEBIAN_FRONTEND=noninteractive", "UCF_FORCE_CONFFOLD=1", "NEEDRESTART_SUSPEND=1"]
    assert update_command() == [*env, "apt-get", "-q", "-o", "DPkg::Lock::Timeout=300", "update"]
    assert upgrade_command() == [
        *env, "apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=300",
        "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold", "full-upgrade",
    ]  # fmt: skip
    assert package_list_command() == ["dpkg-query", "-W", "-f", r"${db:Status-Status}\t${Package}\t${Version}\t${Architecture}\n"]


@pytest.mark.parametrize(
    ("output", "summary", "touched"),
    [
        (APT_26_UPGRADE, UpgradeSummary(3, 1, 0, 0), 4),
        (APT_29_UPGRADE, UpgradeSummary(2, 0, 1, 4), 3),
        (NOTHING, UpgradeSummary(0, 0, 0, 0), 0),
        (PHASED, UpgradeSummary(0, 0, 0, 2), 0),
    ],
)
def test_parse_upgrade_summary(output: str, summary: UpgradeSummary, touched: int) -> None:
    assert parse_upgrade_summary(output) == summary
    assert summary.touched == touched


def test_no_summary_is_an_error() -> None:
    with pytest.raises(ValueError, match="no 'upgraded, newly installed' summary"):
        parse_upgrade_summary("E: Could not get lock /var/lib/dpkg/lock-frontend\n")


def test_parse_packages_keeps_the_installed_ones_sorted() -> None:
    assert parse_packages(DPKG_QUERY) == [
        Package("adduser", "3.134", "all"),
        Package("libc6", "2.36-9+deb12u7", "amd64"),
        Package("libc6", "2.36-9+deb12u7", "i386"),
        Package("zlib1g", "1:1.2.13.dfsg-1", "amd64"),
    ]
    assert parse_packages("") == []


def test_the_updates_run_in_order_each_bounded_and_report_what_they_touched() -> None:
    t = AptLike()
    result = UPDATES_STEP.apply(t, Settings())
    assert result.changed is True
    assert result.detail == "full-upgrade: 3 upgraded, 1 newly installed, 0 removed, 0 kept back"
    assert [c for c, _ in t.commands] == [shlex.join(update_command()), shlex.join(upgrade_command()), "apt-get clean"]
    assert all(timeout is not None and timeout > 0 for _, timeout in t.commands)


@pytest.mark.parametrize(
    ("output", "detail"),
    [
        (NOTHING, "no updates: every package is at its newest version"),
        (PHASED, "no updates: every package is at its newest version (2 kept back: phased or held)"),
    ],
)
def test_nothing_to_update_is_unchanged(output: str, detail: str) -> None:
    assert apply_updates(AptLike(output), Settings()) == (False, detail)


def test_a_failed_upgrade_names_the_command_and_apts_error() -> None:
    with pytest.raises(CommandFailed, match="full-upgrade") as e:
        apply_updates(AptLike(fail="full-upgrade"), Settings())
    assert e.value.exit_code == 100 and "dpkg returned an error code" in str(e.value)


def test_installed_packages_through_the_target() -> None:
    t = AptLike()
    assert [p.name for p in installed_packages(t)] == ["adduser", "libc6", "libc6", "zlib1g"]
    assert t.commands[0][0].startswith("dpkg-query -W -f ")


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="no dpkg on this machine")
def test_installed_packages_of_this_machine() -> None:
    """A real, read-only dpkg-query: the parser sees tabs and one line per package, dpkg among them."""
    packages = installed_packages(LocalTarget())
    assert len(packages) > 10
    assert all(p.name and p.version and p.architecture for p in packages)
    dpkg = [p for p in packages if p.name == "dpkg"]
    version = re.search(r"version (\S+)", subprocess.run(["dpkg", "--version"], capture_output=True, text=True).stdout)
    assert len(dpkg) == 1 and version is not None and dpkg[0].version == version.group(1)
