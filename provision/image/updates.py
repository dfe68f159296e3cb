"""The distribution's updates on a builder before it is provisioned, and its package list after.

Both profiles (Debian 12, Ubuntu 24.04) are apt: ``apt-get update``, then ``apt-get full-upgrade``
(new dependencies installed, obsolete ones removed, as a release's security updates may need),
non-interactive and prompt-free: dpkg keeps a changed configuration file
(``--force-confdef --force-confold``), so does ucf (``UCF_FORCE_CONFFOLD``), and needrestart
restarts nothing mid-build (``NEEDRESTART_SUSPEND``; the image boots fresh anyway). Every command
is bounded, and apt waits a bounded time for the dpkg lock, which cloud-init or apt-daily may hold
on a freshly booted instance.

The command lines and the parsers of apt's summary and of dpkg-query's output are pure (tested as
data); :func:`apply_updates` and :func:`installed_packages` run them on a Target.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ..settings import Settings
from ..steps import FnStep, outcome
from ..target import Target

#: Bounds (seconds) of ``apt-get update`` and of the ``full-upgrade`` (a kernel and ~100 packages).
UPDATE_TIMEOUT_S = 600
UPGRADE_TIMEOUT_S = 1800
#: How long apt waits for the dpkg lock another apt (cloud-init, apt-daily) holds.
LOCK_TIMEOUT_S = 300

#: The environment of every apt command: no prompt from debconf, ucf or needrestart.
APT_ENV = ("env", "DEBIAN_FRONTEND=noninteractive", "UCF_FORCE_CONFFOLD=1", "NEEDRESTART_SUSPEND=1")

#: One line per package dpkg knows: its status, name, version and architecture, tab-separated.
#: (dpkg-query itself turns the backslash escapes into a tab and a newline.)
PACKAGE_FORMAT = r"${db:Status-Status}\t${Package}\t${Version}\t${Architecture}\n"

#: apt's summary of what an upgrade does: apt up to 2.8 (bookworm, noble), and apt 2.9 on.
_SUMMARIES = (
    re.compile(r"^(\d+) upgraded, (\d+) newly installed, (\d+) to remove and (\d+) not upgraded\.", re.M),
    re.compile(r"^\s*Upgrading: (\d+), Installing: (\d+), Removing: (\d+), Not Upgrading: (\d+)", re.M),
)


class Package(NamedTuple):
    """One installed package, as the manifest records it."""

    name: str
    version: str
    architecture: str


class UpgradeSummary(NamedTuple):
    """apt's summary line of an upgrade: how many packages it upgraded, installed, removed, kept back."""

    upgraded: int
    installed: int
    removed: int
    kept_back: int

    @property
    def touched(self) -> int:
        """How many packages the upgrade changed (upgraded, newly installed or removed)."""
        return self.upgraded + self.installed + self.removed

    def line(self) -> str:
        """``12 upgraded, 1 newly installed, 0 removed, 0 kept back``."""
        return f"{self.upgraded} upgraded, {self.installed} newly installed, {self.removed} removed, {self.kept_back} kept back"


def update_command() -> list[str]:
    """``apt-get update``, non-interactive, waiting at most :data:`LOCK_TIMEOUT_S` for the lock."""
    return [*APT_ENV, "apt-get", "-q", "-o", f"DPkg::Lock::Timeout={LOCK_TIMEOUT_S}", "update"]


def upgrade_command() -> list[str]:
    """``apt-get full-upgrade``: yes to everything, old configuration files kept, no prompt."""
    return [
        *APT_ENV,
        "apt-get",
        "-y",
        "-q",
        "-o",
        f"DPkg::Lock::Timeout={LOCK_TIMEOUT_S}",
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "Dpkg::Options::=--force-confold",
        "full-upgrade",
    ]


def package_list_command() -> list[str]:
    """The dpkg-query listing every package with its status (see :data:`PACKAGE_FORMAT`)."""
    return ["dpkg-query", "-W", "-f", PACKAGE_FORMAT]


def parse_upgrade_summary(output: str) -> UpgradeSummary:
    """apt-get's summary (``N upgraded, N newly installed, N to remove and N not upgraded.``), as numbers.

    Raises:
        ValueError: the output has no such line (apt did not get as far as deciding).
    """
    for pattern in _SUMMARIES:
        m = pattern.search(output)
        if m is not None:
            upgraded, installed, removed, kept = (int(g) for g in m.groups())
            return UpgradeSummary(upgraded, installed, removed, kept)
    raise ValueError("apt-get printed no 'upgraded, newly installed' summary")


def parse_packages(output: str) -> list[Package]:
    """The installed packages in dpkg-query's output (status ``installed`` only), sorted by name and architecture.

    Packages removed with their configuration kept (``config-files``), half-installed or
    unpacked-only ones are not installed and are left out.
    """
    found: list[Package] = []
    for line in output.splitlines():
        fields = line.split("\t")
        if len(fields) == 4 and fields[0] == "installed" and fields[1]:
            found.append(Package(fields[1], fields[2], fields[3]))
    return sorted(found, key=lambda p: (p.name, p.architecture))


def apply_updates(target: Target, settings: Settings) -> tuple[bool, str]:
    """Refresh the package lists and apply every pending update; report what the upgrade touched.

    A second run finds nothing to do and reports unchanged. The downloaded .debs are cleaned
    away (they have no place in an image).

    Raises:
        CommandFailed: apt failed or ran out of time (the exit code and apt's last lines say which).
    """
    target.run(update_command(), timeout=UPDATE_TIMEOUT_S)
    result = target.run(upgrade_command(), timeout=UPGRADE_TIMEOUT_S)
    target.run(["apt-get", "clean"], timeout=120)
    try:
        summary = parse_upgrade_summary(result.stdout)
    except ValueError:
        return True, "full-upgrade ran; apt printed no summary line, so what it changed is unknown"
    done = [f"full-upgrade: {summary.line()}"] if summary.touched else []
    more = f" ({summary.kept_back} kept back: phased or held)" if summary.kept_back else ""
    return outcome(done, f"no updates: every package is at its newest version{more}")


def installed_packages(target: Target) -> list[Package]:
    """Every package installed on the target, with its version and architecture."""
    return parse_packages(target.run(package_list_command(), timeout=120).stdout)


#: The step that applies the updates (before provisioning).
UPDATES_STEP = FnStep("security updates (apt-get full-upgrade)", apply_updates)
