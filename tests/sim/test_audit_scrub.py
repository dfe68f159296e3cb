"""Audit and scrub against a real systemd container of the sim's OS image (host keys made at boot).

Each planted secret is caught as exactly its kind at its path; then the scrub removes
what it removes by design, the audit reports exactly the rest, a second scrub changes
nothing, sshd refuses passwords, root's password is locked, and first boot can make new
host keys. Fake secrets are assembled at run time.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

from provision.exceptions import AuditFailed
from provision.image.audit import CLUSTER_KEYRINGS, AuditReport, audit, require_clean
from provision.image.scrub import ScrubStep, scrub
from provision.image.sshd import SSHD_DROPIN
from provision.settings import Settings
from provision.steps import run_steps
from provision.target import Target
from provision.target.docker import DockerTarget

pytestmark = pytest.mark.docker

PASSWORD = "s3cr3t-" + "never-printed"
CEPHX = "AQBJmVxm" + "AAAAABAAk3Qq5qB7Zl2sZ0Vf3Gc9xw=="
AKIA = "AKI" + "AQ7RZ4XN2KD5MWPLT"
AWS_SECRET = "Zx9" + "f3kLmN0pQrStUvWxYz0123456789abcdEFGHi"


@pytest.fixture
def target(systemd_container: Any, docker_client: Any) -> Target:
    """A DockerTarget into a fresh systemd container of the OS image."""
    return DockerTarget(systemd_container.name, client=docker_client)


def plant_private_key(t: Target) -> str:
    t.run("mkdir -p /opt/x && ssh-keygen -q -t ed25519 -N '' -C build -f /opt/x/key.pem")
    return "/opt/x/key.pem"


def plant_authorized_keys(t: Target) -> str:
    t.run("install -d -m 0700 -o admin -g admin /home/admin/.ssh")
    t.put("/home/admin/.ssh/authorized_keys", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBuild build-key\n", mode=0o600, owner="admin")
    return "/home/admin/.ssh/authorized_keys"


def plant_history(t: Target) -> str:
    t.put("/root/.bash_history", f"mysql -p{PASSWORD}\n", mode=0o600)
    return "/root/.bash_history"


def plant_keyring(t: Target) -> str:
    t.put("/etc/ceph/ceph.client.images.keyring", f"[client.images]\n\tkey = {CEPHX}\n", mode=0o640)
    return "/etc/ceph/ceph.client.images.keyring"


def plant_glance_conf(t: Target) -> str:
    t.put("/etc/glance/glance-api.conf", f"[keystone_authtoken]\nusername = glance\npassword = {PASSWORD}\n", mode=0o640)
    return "/etc/glance/glance-api.conf"


def plant_aws(t: Target) -> str:
    t.run("install -d -m 0700 -o admin -g admin /home/admin/.aws")
    body = f"[default]\naws_access_key_id = {AKIA}\naws_secret_access_key = {AWS_SECRET}\n"
    t.put("/home/admin/.aws/credentials", body, mode=0o600, owner="admin")
    return "/home/admin/.aws/credentials"


def plant_machine_id(t: Target) -> str:
    t.run("cat /proc/sys/kernel/random/uuid | tr -d '-' > /etc/machine-id")
    return "/etc/machine-id"


def plant_world_readable(t: Target) -> str:
    t.put("/root/openrc", f"export OS_USERNAME=admin\nexport OS_PASSWORD={PASSWORD}\n", mode=0o644)
    return "/root/openrc"


def plant_nothing(t: Target) -> str:
    return "/etc/ssh/ssh_host_ed25519_key"  # made by the first boot of the container


PLANTS: dict[str, tuple[Callable[[Target], str], set[str]]] = {
    "private-key": (plant_private_key, {"private-key"}),
    "ssh-host-key": (plant_nothing, {"ssh-host-key"}),
    "authorized-keys": (plant_authorized_keys, {"authorized-keys"}),
    "shell-history": (plant_history, {"shell-history"}),
    "cephx-keyring": (plant_keyring, {"cephx-keyring"}),
    "openstack-password": (plant_glance_conf, {"openstack-password"}),
    "aws-credentials": (plant_aws, {"aws-credentials"}),
    "machine-id": (plant_machine_id, {"machine-id"}),
    "world-readable-secret": (plant_world_readable, {"openstack-password", "world-readable-secret"}),
}

#: What a fresh container has anyway: its host keys and machine-id, made at boot, and (now that
#: the audit scans /var/log too) the journal of that boot, which journald preallocates in 8 MiB files.
def _boot_state(path: str, kind: str) -> bool:
    return (
        (kind == "ssh-host-key" and path.startswith("/etc/ssh/ssh_host_"))
        or (kind, path) == ("machine-id", "/etc/machine-id")
        or path.startswith("/var/log/journal/")
    )


def _no_secret_in(report: AuditReport) -> None:
    text = "\n".join(report.lines())
    for secret in (PASSWORD, CEPHX, AKIA, AWS_SECRET):
        assert secret not in text


@pytest.mark.parametrize("kind", list(PLANTS))
def test_audit_catches_each_kind(target: Target, kind: str) -> None:
    plant, expected = PLANTS[kind]
    # What the distribution's image holds before anything is planted (its apt logs, say) is the
    # baseline; the plant must add exactly its kinds at its path, and nothing elsewhere.
    baseline = {(f.path, f.kind) for f in audit(target, Settings()).findings}
    path = plant(target)
    report = audit(target, Settings())
    assert report.kinds(path) == expected, report.lines()
    others = {(f.path, f.kind) for f in report.findings if f.path != path} - baseline
    assert all(_boot_state(p, k) for p, k in others), others
    _no_secret_in(report)
    with pytest.raises(AuditFailed):
        require_clean(report)


def test_scrub_then_audit(target: Target) -> None:
    t = target
    planted = {kind: plant(t) for kind, (plant, _) in PLANTS.items()}
    t.run("echo 'PasswordAuthentication yes' > /etc/ssh/sshd_config.d/10-builder.conf")
    t.run("echo junk > /tmp/build.log && echo junk > /var/tmp/x && echo installed >> /var/log/dpkg.log && logger build step")
    before = audit(t, Settings())
    for kind, path in planted.items():
        assert before.kinds(path) == PLANTS[kind][1], (kind, before.lines())

    report = run_steps(t, Settings(), [ScrubStep()], log=lambda line: None)
    result = report.results[0]
    assert result.changed and result.name == "scrub"
    assert PASSWORD not in result.detail and CEPHX not in result.detail

    # Left by design: keyrings the first boot rotates, and what is a provisioning bug to
    # fix at its source (or a file a service needs).
    after = audit(t, Settings())
    assert {(f.path, f.kind) for f in after.findings} == {
        (planted["private-key"], "private-key"),
        (planted["cephx-keyring"], "cephx-keyring"),
        (planted["openstack-password"], "openstack-password"),
        (planted["aws-credentials"], "aws-credentials"),
    }, after.lines()
    assert audit(t, Settings(), allow=CLUSTER_KEYRINGS).kinds(planted["cephx-keyring"]) == set()

    again = scrub(t, Settings())
    assert not again.changed, again.detail

    t.run("rm -rf /opt/x /etc/glance /home/admin/.aws /etc/ceph")
    require_clean(audit(t, Settings()))

    # sshd: key-only root, no passwords (sshd -T needs a host key: a throwaway one)
    effective = t.run(
        "d=$(mktemp -d); ssh-keygen -q -t ed25519 -N '' -f $d/k; sshd -T -h $d/k; rc=$?; rm -rf $d; exit $rc"
    ).stdout.splitlines()
    assert any(line in ("permitrootlogin without-password", "permitrootlogin prohibit-password", "permitrootlogin no") for line in effective)
    assert "passwordauthentication no" in effective
    assert t.exists(SSHD_DROPIN)
    assert t.run("passwd -S root").stdout.split()[1] == "L"

    # what must exist for first boot is still there
    assert t.run("stat -c %s /etc/machine-id").stdout.strip() == "0"
    assert not t.run("test -e /var/lib/dbus/machine-id || test -L /var/lib/dbus/machine-id", check=False).ok
    assert t.run("test -d /var/log/journal && test -f /var/log/dpkg.log && test -f /var/log/wtmp", check=False).ok
    assert t.run("stat -c %s /var/log/dpkg.log").stdout.strip() == "0"
    assert t.run("ls -A /var/log/journal").stdout.strip() == ""
    assert t.run("ls -A /tmp | grep -v -e '^systemd-private-' -e '^\\.' ", check=False).stdout.strip() == ""
    assert t.run("command -v ssh-keygen", check=False).ok

    # cloud-init's first boot of an instance (its state is cleaned) makes new host keys, and sshd
    # accepts its config with them
    assert not t.run("ls /etc/ssh/ssh_host_*_key", check=False).ok and not t.exists("/var/lib/cloud/instance")
    t.run("cloud-init init", timeout=300)
    assert t.run("ls /etc/ssh/ssh_host_ed25519_key").ok
    assert t.run("sshd -t").ok
