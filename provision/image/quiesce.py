"""Quiesce: stop every service of the image that writes, so the final scrub and audit see the disk as imaged.

Between the first scrub and the image, the services keep running: they write logs, the
journal, temporary files, and at their stop a last word. :class:`QuiesceStep` stops them,
in groups and in this order (each group one bounded ``systemctl stop``, see
:func:`provision.systemd.stop_units`):

1. what starts work by itself: timers, cron, unattended upgrades, the apt and logrotate jobs;
2. the OpenStack services (the profile's units, the dashboard's Apache included, and what
   their agents left running, such as Neutron's dnsmasq), then the running guests (``virsh destroy``: an EC2 stop would end them the same way), then
   libvirt's daemons and sockets (a socket would start a daemon again);
3. RabbitMQ, MariaDB and memcached, then the Ceph daemons (the OSDs and the manager, then the
   monitor);
4. the syslog daemons; then the journal is flushed, rotated and moved to ``/run``
   (``journalctl --relinquish-var``), so nothing writes to ``/var/log/journal`` any more.

sshd keeps running (the build's connection is how the final scrub and audit arrive) and
so does systemd itself. A second run finds nothing running and reports "unchanged". The
unit lists are pure (:func:`quiesce_groups`); only :meth:`QuiesceStep.apply` acts.
"""

from __future__ import annotations

import time

from ..openstack.profile import OpenStackProfile, profile
from ..paths import ceph_units
from ..settings import Settings
from ..steps import StepResult
from ..systemd import bounded, stop_units, unit_states
from ..target import Target
from .scrub import SYSLOG_UNITS

#: Units that start work by themselves (their timers first).
SCHEDULERS = (
    "cron.service", "anacron.service", "atd.service", "unattended-upgrades.service", "apt-daily.service",
    "apt-daily-upgrade.service", "logrotate.service", "man-db.service", "dpkg-db-backup.service",
    "e2scrub_all.service", "fstrim.service", "systemd-tmpfiles-clean.service",
)
#: libvirt's helpers and the sockets that would start its daemons again.
LIBVIRT_UNITS = (
    "libvirtd.socket", "libvirtd-ro.socket", "libvirtd-admin.socket", "libvirtd-tcp.socket", "libvirtd-tls.socket",
    "virtlogd.socket", "virtlogd-admin.socket", "virtlockd.socket", "virtlockd-admin.socket",
    "virtlogd.service", "virtlockd.service",
)
#: Stops every running guest of the local hypervisor (prints each domain it stopped).
DESTROY_GUESTS = (
    "for d in $(virsh -q -c qemu:///system list --name --state-running 2>/dev/null); do "
    'virsh -q -c qemu:///system destroy "$d" >/dev/null && printf "%s\\n" "$d"; done; true'
)
#: Flush, rotate and move the journal to /run until the next boot.
JOURNAL = "journalctl --flush; journalctl --rotate; journalctl --relinquish-var || journalctl --rotate"


def quiesce_groups(settings: Settings, os_profile: OpenStackProfile) -> list[tuple[str, tuple[str, ...]]]:
    """The groups of units to stop, in order: ``(what, units)`` (pure). Guests go between OpenStack and libvirt."""
    c = settings.ceph
    return [
        ("schedulers", SCHEDULERS),
        ("OpenStack", tuple(reversed(os_profile.service_units))),
        ("libvirt", (os_profile.libvirt_unit, *LIBVIRT_UNITS)),
        ("infrastructure", (os_profile.broker_unit, os_profile.database_unit, "memcached.service")),
        ("Ceph OSDs and manager", ("ceph-crash.service", *reversed(ceph_units(c.mon_id, c.mgr_id, c.osd_count)[1:]))),
        ("Ceph monitor", ceph_units(c.mon_id, c.mgr_id, c.osd_count)[:1]),
        ("syslog", SYSLOG_UNITS),
    ]


def active_timers(target: Target) -> list[str]:
    """The timer units that are active (they would start jobs)."""
    r = target.run(["systemctl", "list-units", "--type=timer", "--state=active", "--plain", "--no-legend"], check=False)
    return [line.split()[0] for line in r.stdout.splitlines() if line.split() and line.split()[0].endswith(".timer")]


class QuiesceStep:
    """Stop every service of the image that writes (see the module docstring); run after the first scrub."""

    name = "quiesce"

    def __init__(self, profile_name: str, timeout: int = 300) -> None:
        self.profile_name = profile_name
        self.timeout = timeout

    def apply(self, target: Target, settings: Settings) -> StepResult:
        """Stop timers, services and guests in order, then put the journal on /run."""
        start = time.monotonic()
        did: list[str] = []
        timers = active_timers(target)
        for what, units in quiesce_groups(settings, profile(self.profile_name)):
            if what == "schedulers" and timers:
                stopped = stop_units(target, timers, self.timeout)
                did.append(f"stopped {len(stopped)} timers")
            if what == "libvirt" and unit_states(target, [units[0]])[units[0]][0] == "active":
                guests = target.run(bounded(["sh", "-c", DESTROY_GUESTS], self.timeout), check=False).stdout.split()
                if guests:
                    did.append(f"stopped {len(guests)} guest(s): {' '.join(guests)}")
            stopped = stop_units(target, list(dict.fromkeys(units)), self.timeout)
            if stopped:
                did.append(f"stopped {what}: {' '.join(stopped)}")
            if what == "OpenStack" and stopped:
                # Agents may leave children behind (Neutron's dnsmasq with KillMode=process): end them too.
                target.run(bounded(["systemctl", "kill", "--kill-who=all", "--signal=SIGTERM", *stopped], 60), check=False)
        if did:
            target.run(bounded(["sh", "-c", JOURNAL], 120), check=False)
            did.append("journal flushed, rotated and moved to /run")
        detail = "; ".join(did) if did else "nothing of the image's was running"
        return StepResult(self.name, bool(did), detail, time.monotonic() - start)
