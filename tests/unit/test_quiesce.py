"""Quiesce and the image gate, offline: the stop order on a fake host's systemd, the gate's allow-list on a tree."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from provision.exceptions import AuditFailed, ProvisionError
from provision.image.prepare import final_audit
from provision.image.quiesce import QuiesceStep, quiesce_groups
from provision.openstack.profile import profile
from provision.settings import Settings
from provision.target.base import Target
from provision.target.local import LocalTarget
from tests.unit.test_audit import plant

CEPHX = "AQ" + "BJmVxmAAAAABAAk3Qq5qB7Zl2sZ0Vf3Gc9xw=="


class FakeHost(Target):
    """A host whose systemd and hypervisor are a few sets: answers systemctl show/stop/list-units, virsh, journalctl."""

    name = "fake://host"

    def __init__(self, running: set[str], guests: tuple[str, ...] = (), stubborn: frozenset[str] = frozenset()) -> None:
        self.running = set(running)
        self.guests = list(guests)
        self.stubborn = stubborn
        self.events: list[str] = []

    def _exec(self, command: str, stdin: bytes | None, timeout: float | None) -> tuple[int, bytes, bytes]:
        argv = shlex.split(command)
        if argv[:3] == ["timeout", "-k", "5"]:
            argv = argv[4:]
        if argv[:2] == ["systemctl", "show"]:
            units = [a for i, a in enumerate(argv[2:]) if a != "-p" and argv[2:][i - 1] != "-p"]
            blocks = [f"ActiveState={'active' if u in self.running else 'inactive'}\nResult=success" for u in units]
            return 0, ("\n\n".join(blocks) + "\n").encode(), b""
        if argv[:2] == ["systemctl", "stop"]:
            self.events.append("stop " + " ".join(argv[2:]))
            self.running -= set(argv[2:]) - self.stubborn
            return 0, b"", b""
        if argv[:2] == ["systemctl", "kill"]:
            self.events.append("kill " + " ".join(a for a in argv[2:] if not a.startswith("-")))
            return 0, b"", b""
        if argv[:2] == ["systemctl", "list-units"]:
            timers = sorted(u for u in self.running if u.endswith(".timer"))
            return 0, "".join(f"{t} loaded active waiting x\n" for t in timers).encode(), b""
        if argv[:2] == ["sh", "-c"] and "virsh" in argv[2]:
            self.events.append("destroy " + " ".join(self.guests))
            out, self.guests = "\n".join(self.guests), []
            return 0, out.encode(), b""
        if argv[:2] == ["sh", "-c"] and "journalctl" in argv[2]:
            self.events.append("journal")
            return 0, b"", b""
        return 127, b"", f"unexpected command: {command}".encode()


RUNNING = {
    "apt-daily.timer", "cron.service", "keystone.service", "apache2.service", "nova-compute.service", "nova-api.service",
    "libvirtd.service", "virtlogd.socket", "rabbitmq-server.service", "mariadb.service", "ceph-osd@0.service",
    "ceph-mgr@x.service", "ceph-mon@a.service", "rsyslog.service", "ssh.service",
}


def _index(events: list[str], word: str) -> int:
    return next(i for i, e in enumerate(events) if word in e.split())


def test_quiesce_stops_in_order_and_leaves_sshd() -> None:
    host = FakeHost(RUNNING, guests=("instance-00000001",))
    result = QuiesceStep("debian-12").apply(host, Settings())
    assert result.changed and "instance-00000001" in result.detail
    assert host.running == {"ssh.service"}
    e = host.events
    assert _index(e, "apt-daily.timer") < _index(e, "cron.service") < _index(e, "nova-compute.service")
    assert _index(e, "nova-compute.service") < _index(e, "destroy") < _index(e, "libvirtd.service")
    assert _index(e, "libvirtd.service") < _index(e, "rabbitmq-server.service") < _index(e, "ceph-osd@0.service")
    assert _index(e, "ceph-osd@0.service") < _index(e, "ceph-mon@a.service") < _index(e, "rsyslog.service") < e.index("journal")
    assert e[_index(e, "nova-compute.service") + 1].startswith("kill ")  # what the OpenStack units left running
    again = QuiesceStep("debian-12").apply(host, Settings())
    assert not again.changed and again.detail == "nothing of the image's was running"


def test_quiesce_fails_when_a_unit_does_not_stop() -> None:
    host = FakeHost({"mariadb.service"}, stubborn=frozenset({"mariadb.service"}))
    with pytest.raises(ProvisionError, match="mariadb.service"):
        QuiesceStep("debian-12").apply(host, Settings())


def test_quiesce_groups_follow_the_profile_and_the_cluster() -> None:
    groups = dict(quiesce_groups(Settings().replace(ceph={"osd_count": 2}), profile("debian-12")))
    assert groups["Ceph OSDs and manager"] == ("ceph-crash.service", "ceph-osd@1.service", "ceph-osd@0.service", "ceph-mgr@x.service")
    assert groups["Ceph monitor"] == ("ceph-mon@a.service",)
    assert set(profile("debian-12").service_units) <= set(groups["OpenStack"])
    assert groups["infrastructure"] == ("rabbitmq-server.service", "mariadb.service", "memcached.service")


# --- the gate's allow-list ------------------------------------------------------------------
def _built_image(root: Path) -> None:
    """What a built image rightly holds: the cluster's keyrings and the databases first boot renews."""
    plant(root, "/etc/machine-id", "", 0o444)
    plant(root, "/etc/ceph/ceph.client.admin.keyring", f"[client.admin]\n\tkey = {CEPHX}\n")
    plant(root, "/var/lib/ceph/mon/ceph-a/keyring", f"[mon.]\n\tkey = {CEPHX}\n")
    plant(root, "/var/lib/ceph/mon/ceph-a/store.db/000012.sst", b"\x00rocks")
    plant(root, "/var/lib/mysql/ibdata1", b"\x00innodb")
    plant(root, "/var/lib/rabbitmq/mnesia/rabbit@cephdemo/rabbit_user.DCD", b"cXM\x00")


def test_the_gate_allows_what_first_boot_renews(tmp_path: Path) -> None:
    _built_image(tmp_path)
    lines: list[str] = []
    report = final_audit(LocalTarget(), Settings(), lines.append, root=str(tmp_path))
    assert report.ok and len(report.allowed) == 5
    assert lines[0] == "==> final audit" and "clean" in lines[1]


@pytest.mark.parametrize(
    "path, content",
    [
        ("/var/lib/ceph/bootstrap-osd/ceph.keyring", f"[client.bootstrap-osd]\n\tkey = {CEPHX}\n"),  # never allowed
        ("/var/lib/rabbitmq/.erlang.cookie", "ABCDEFGHIJKLMNOPQRST"),  # allowed only while the broker runs
        ("/var/lib/postgresql/15/main/base/1/1259", "x"),  # a database first boot does not renew
    ],
)
def test_the_gate_refuses_anything_else(tmp_path: Path, path: str, content: str) -> None:
    _built_image(tmp_path)
    plant(tmp_path, path, content, 0o400)
    with pytest.raises(AuditFailed):
        final_audit(LocalTarget(), Settings(), lambda line: None, root=str(tmp_path))
