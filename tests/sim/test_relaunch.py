"""A new instance from this instance's disk (``sim.relaunch()``: new id, new IP, new name) and what must hold after it.

A relaunch costs minutes (an image of the instance, then a first boot), so the module relaunches
once (the ``relaunched`` fixture) and every test checks one aspect of that same relaunch: EC2's
view and the metadata, the monitor's new address, data kept, every cephx key and OpenStack
secret renewed, endpoints, console and dashboard following the new name, a new TLS key and a
certificate for the new names whose fingerprint the console printed, no second volume.
The reliability suite relaunches more times in a row, and checks that no instance reuses an
earlier one's keys (test_reliability.py).
"""

from __future__ import annotations

import socket
import time
from typing import Any, Iterator

import pytest

from provision import tls
from provision.ceph import cli as ceph_cli
from provision.ceph import health
from provision.openstack.compute import LIBVIRT_SECRET_RECORD, secret_value_digest
from provision.openstack.dashboard import DASHBOARD_OVERRIDES
from provision.openstack.identity import parse_openrc
from provision.openstack.ini import parse_ini
from provision.openstack.secrets import Secrets
from tests.sim.names import assert_cloud_init_done_and_names_ours
from tests.sim.test_ceph import HEALTH_TIMEOUT_S, boot_log, client_keys, image_sha256, mon_vectors, reused_keys
from tests.sim.test_ceph import IMAGE as DATA_IMAGE
from tests.sim.test_openstack import OPENRC, boot_volumes, cli, endpoints, secrets_of
from tests.sim.test_sim import imds_get
from tests.sim.test_tls import console_fingerprints, fingerprint, tls_request

pytestmark = pytest.mark.docker

DATA = "/root/coa-sim-ceph-check.bin"
#: Ports of services that hold the image's (or an earlier instance's) keys until the rotation:
#: Ceph's monitor (msgr2, msgr1), Keystone, RabbitMQ, Glance, Cinder.
PROBED_PORTS = (3300, 6789, 5000, 5672, 9292, 8776)


def first_answer(ip: str, ports: tuple[int, ...], deadline: float) -> tuple[float, int] | None:
    """(host monotonic time, port) of the first TCP connection to ``ip`` that a listener accepted; None by ``deadline``."""
    while time.monotonic() < deadline:
        for port in ports:
            try:
                socket.create_connection((ip, port), timeout=0.3).close()
                return time.monotonic(), port
            except OSError:
                pass
        time.sleep(0.2)
    return None


@pytest.fixture(scope="module")
def relaunched(sim: Any) -> Iterator[dict[str, Any]]:
    """8 MiB of random data written to an RBD image, what the instance looked like, one relaunch."""
    t, s = sim.target, sim.settings
    health.wait_healthy(t, s, timeout=HEALTH_TIMEOUT_S)
    ceph_cli.rbd(t, s, "rm", DATA_IMAGE, check=False)
    t.run(["sh", "-c", f"head -c 8M /dev/urandom > {DATA}"])
    ceph_cli.rbd(t, s, "--id", s.volume_pool, "import", DATA, DATA_IMAGE)
    local = t.run(["sha256sum", DATA]).stdout.split()[0]
    t.run(["rm", "-f", DATA])
    assert image_sha256(t, s) == local
    before = {
        "status": sim.status(),
        "boot_log_lines": len(boot_log(sim)),
        "data_sha256": local,
        "keys": client_keys(t, s),
        "openrc": parse_openrc(t.read(OPENRC).decode()),
        "secrets": secrets_of(sim),
        "fernet": t.run("cat /etc/keystone/fernet-keys/* | sha256sum").stdout,
        "boot_volumes": [v["ID"] for v in boot_volumes(sim)],
        "tls_key": t.run(["sha256sum", tls.cert_files(s).key]).stdout.split()[0],
        "tls_fingerprint": tls.served_fingerprint(t, s),
    }
    sim.relaunch(wait=False)
    ip = sim.ec2().describe_instances(InstanceIds=[sim.status_ids()["instance_id"]])["Reservations"][0]["Instances"][0]["PrivateIpAddress"]
    opened = first_answer(ip, PROBED_PORTS, time.monotonic() + 900)
    after = sim.wait_ready()
    yield {"before": before, "after": after, "opened": opened}
    ceph_cli.rbd(sim.target, s, "rm", DATA_IMAGE, check=False)


def test_new_instance_ip_and_mapping(sim: Any, relaunched: dict[str, Any]) -> None:
    before, after = relaunched["before"]["status"], relaunched["after"]
    assert after["instance_id"] != before["instance_id"]
    assert after["private_ip"] != before["private_ip"]
    assert after["ready"] is True, after["checks"]
    t = sim.target
    assert imds_get(t, "meta-data/instance-id") == after["instance_id"]
    assert t.run("getent hosts cephdemo").stdout.split()[0] == after["private_ip"]
    assert t.run("getent hosts %s", after["public_hostname"]).stdout.split()[0] == after["private_ip"]
    old = sim.ec2().describe_instances(InstanceIds=[before["instance_id"]])["Reservations"][0]["Instances"][0]
    assert old["State"]["Name"] == "terminated"


def test_cloud_init_done_and_names_ours_on_the_new_instance(sim: Any, relaunched: dict[str, Any]) -> None:
    assert_cloud_init_done_and_names_ours(sim)


def test_monitor_readdressed_and_data_intact(sim: Any, relaunched: dict[str, Any]) -> None:
    t, s = sim.target, sim.settings
    ip = relaunched["after"]["private_ip"]
    health.wait_healthy(t, s, timeout=HEALTH_TIMEOUT_S)
    vectors = mon_vectors(t, s)
    assert f"v2:{ip}:3300" in vectors and f"v1:{ip}:6789" in vectors, vectors
    assert any(" readdress changed: " in line for line in boot_log(sim)[relaunched["before"]["boot_log_lines"]:]), \
        "no re-addressing logged"
    assert image_sha256(t, s) == relaunched["before"]["data_sha256"], "data changed"


def test_every_cephx_key_renewed(sim: Any, relaunched: dict[str, Any]) -> None:
    same = reused_keys(client_keys(sim.target, sim.settings), relaunched["before"]["keys"])
    assert not same, f"{same} kept a key of the earlier instance"


def test_every_openstack_secret_renewed(sim: Any, relaunched: dict[str, Any]) -> None:
    t, before = sim.target, relaunched["before"]
    env = parse_openrc(t.read(OPENRC).decode())
    st = t.file_state(OPENRC)
    assert st is not None and st.mode == 0o600
    assert env["OS_PASSWORD"] != before["openrc"]["OS_PASSWORD"]
    refused = cli(t, "token issue", check=False, password=before["openrc"]["OS_PASSWORD"])
    assert not refused.ok and "401" in refused.stderr
    assert cli(t, "token issue -f value -c id").stdout.strip()

    old_secrets, new_secrets = before["secrets"], secrets_of(sim)
    assert set(new_secrets.differing(old_secrets)) == {f for f in Secrets.__dataclass_fields__}
    assert t.run("cat /etc/keystone/fernet-keys/* | sha256sum").stdout != before["fernet"]
    for user, attr in (("keystone", "keystone_db"), ("glance", "glance_db"), ("cinder", "cinder_db"), ("nova", "nova_db")):
        probe = "read -r MYSQL_PWD && export MYSQL_PWD && timeout 30 mysql --protocol=socket -u %s -e 'SELECT 1'"
        assert not t.run(probe, user, check=False, stdin=getattr(old_secrets, attr) + "\n").ok, f"old {user} DB password still works"
        assert t.run(probe, user, check=False, stdin=getattr(new_secrets, attr) + "\n").ok
    # The broker imported this instance's user password from its definitions at its only start.
    auth = ["rabbitmqctl", "-q", "authenticate_user", "openstack"]  # the password on stdin
    assert not t.run(auth, check=False, stdin=old_secrets.rabbit + "\n").ok, "the broker still takes the image's password"
    assert t.run(auth, check=False, stdin=new_secrets.rabbit + "\n").ok
    secrets_list = t.run(["virsh", "-q", "-c", "qemu:///system", "secret-list"]).stdout
    assert new_secrets.libvirt_secret_uuid in secrets_list and old_secrets.libvirt_secret_uuid not in secrets_list
    key = t.run(["ceph", "--connect-timeout", "10", "auth", "get-key", f"client.{sim.settings.volume_pool}"]).stdout.strip()
    # Issue 14: the secret is private, so libvirt refuses to hand its value out; the value libvirt
    # stores (root-only, under /etc/libvirt/secrets) and our record of what was set say it is the new key.
    uid = new_secrets.libvirt_secret_uuid
    assert "private='yes'" in t.run(["virsh", "-q", "-c", "qemu:///system", "secret-dumpxml", uid]).stdout
    refused = t.run(["virsh", "-q", "-c", "qemu:///system", "secret-get-value", uid], check=False)
    assert not refused.ok and "private" in refused.stderr and key not in refused.stdout
    assert t.read(f"/etc/libvirt/secrets/{uid}.base64").decode().strip() == key
    record = f"{sim.settings.state_dir}/{LIBVIRT_SECRET_RECORD}"
    assert t.read(record).decode().strip() == secret_value_digest(uid, key)
    st = t.file_state(record)
    assert st is not None and (st.mode, st.owner) == (0o600, "root")


def test_endpoints_console_and_dashboard_follow_the_new_name(sim: Any, relaunched: dict[str, Any]) -> None:
    t, before, after = sim.target, relaunched["before"]["status"], relaunched["after"]
    eps = endpoints(t)
    public = [e["URL"] for e in eps if e["Interface"] == "public"]
    internal = [e["URL"] for e in eps if e["Interface"] in ("internal", "admin")]
    assert len(public) == 6 and all(f"//{after['public_hostname']}:" in u for u in public)
    assert len(internal) == 12 and all(f"//{after['private_ip']}:" in u for u in internal)

    # Issue 14: public endpoints, the console's dashboard URL and noVNC are HTTPS (the TLS proxies).
    assert all(u.startswith(f"https://{after['public_hostname']}:") for u in public)
    assert all(u.startswith(f"http://{after['private_ip']}:") for u in internal)
    console = sim.console()  # the new instance's console, through the EC2 API
    assert console.count(f"admin password for https://{after['public_hostname']}/ (certificate SHA-256 ") == 1

    vnc = parse_ini(t.read("/etc/nova/nova.conf").decode())["vnc"]
    assert vnc["novncproxy_base_url"].startswith(f"https://{after['public_hostname']}:{sim.settings.tls.novnc_port}/")
    assert vnc["server_proxyclient_address"] == after["private_ip"]
    hosts = t.read(DASHBOARD_OVERRIDES).decode()
    assert repr(after["public_hostname"]) in hosts and before["public_hostname"] not in hosts


def test_a_new_tls_key_and_a_certificate_for_the_new_names(sim: Any, relaunched: dict[str, Any]) -> None:
    t, s = sim.target, sim.settings
    before, after = relaunched["before"], relaunched["after"]
    files = tls.cert_files(s)
    assert t.run(["sha256sum", files.key]).stdout.split()[0] != before["tls_key"], "the key of the earlier instance was kept"
    sans = tls.parse_sans(t.run(tls.sans_argv(files.cert)).stdout)
    assert f"DNS:{after['public_hostname']}" in sans and f"IP:{after['private_ip']}" in sans
    assert f"DNS:{before['status']['public_hostname']}" not in sans and f"IP:{before['status']['private_ip']}" not in sans
    fp = tls.served_fingerprint(t, s)
    assert fp != before["tls_fingerprint"]
    # The new fingerprint is on the console (with the new admin password), and port 443 serves it.
    assert console_fingerprints(sim)[-1] == fp
    _, der = tls_request(sim, s.tls.dashboard_port)
    assert fingerprint(der) == fp
    made = t.run("journalctl -o cat --no-pager -b -u coa-tls", check=False).stdout
    assert "new key and certificate" in made


def test_the_boot_volume_is_kept_not_copied_again(sim: Any, relaunched: dict[str, Any]) -> None:
    assert [v["ID"] for v in boot_volumes(sim)] == relaunched["before"]["boot_volumes"]
    assert len(relaunched["before"]["boot_volumes"]) == 1


def test_no_service_answers_from_the_network_before_the_new_instance_has_its_own_secrets(sim: Any, relaunched: dict[str, Any]) -> None:
    """The first-boot fence: from outside, the monitor, Keystone, RabbitMQ, Glance and Cinder answered only
    after every job that makes this instance's secrets had finished (host and container share one monotonic clock)."""
    opened = relaunched["opened"]
    assert opened is not None, "no probed port ever answered from the network"
    at, port = opened
    units = ["coa-ceph-mon-key.service", "coa-ceph-keys.service", "coa-openstack-broker.service", "coa-openstack-secrets.service",
             "coa-unfence.service"]
    out = sim.target.run(["systemctl", "show", "-p", "Id", "-p", "ActiveEnterTimestampMonotonic", *units]).stdout
    done = {}
    for block in out.strip().split("\n\n"):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        done[fields["Id"]] = int(fields["ActiveEnterTimestampMonotonic"]) / 1e6
    assert all(done.values()), done  # each ran at this boot (0 = never)
    secrets_done = max(v for k, v in done.items() if k != "coa-unfence.service")
    assert at >= secrets_done, f"port {port} answered at {at:.1f}, secrets done at {done}"
