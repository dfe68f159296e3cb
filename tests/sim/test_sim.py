"""The simulation itself: moto's instance seen from inside, hostname, SSH, status, relaunch."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest

from provision.target import from_spec
from sim.state import SimState
from tests.sim.conftest import USER_DATA_FILE
from tests.sim.names import IMDS, assert_cloud_init_done_and_names_ours, cloud_init_result, imds_get

pytestmark = pytest.mark.docker



def describe(sim: Any) -> dict[str, Any]:
    iid = sim.status()["instance_id"]
    return sim.ec2().describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]


def test_metadata_inside_equals_moto(sim: Any) -> None:
    inst = describe(sim)
    t = sim.target
    expected = {
        "meta-data/instance-id": inst["InstanceId"],
        "meta-data/ami-id": inst["ImageId"],
        "meta-data/instance-type": inst["InstanceType"],
        "meta-data/local-ipv4": inst["PrivateIpAddress"],
        "meta-data/public-ipv4": inst["PublicIpAddress"],
        "meta-data/public-hostname": inst["PublicDnsName"],
        "meta-data/local-hostname": inst["PrivateDnsName"],
        "meta-data/placement/availability-zone": inst["Placement"]["AvailabilityZone"],
    }
    seen = {path: imds_get(t, path) for path in expected}
    assert seen == expected
    assert inst["InstanceType"] == sim.settings.instance_type == "m1.xlarge"


def test_container_is_the_instance(sim: Any, docker_client: Any) -> None:
    inst = describe(sim)
    t = sim.target
    addrs = t.run("ip -4 -o addr show scope global").stdout
    assert f"inet {inst['PrivateIpAddress']}/" in addrs
    c = docker_client.containers.get(sim.container)
    assert c.attrs["HostConfig"]["Memory"] == 15360 * 1024 * 1024  # m1.xlarge
    assert t.run("cat /proc/1/comm").stdout.strip() == "systemd"


def test_ec2_metadata_tool_accepts_the_sim(sim: Any) -> None:
    inst = describe(sim)
    out = sim.target.run("ec2-metadata --local-ipv4 --instance-id --public-hostname").stdout
    assert f"local-ipv4: {inst['PrivateIpAddress']}" in out
    assert f"instance-id: {inst['InstanceId']}" in out
    assert f"public-hostname: {inst['PublicDnsName']}" in out


def test_imdsv2_semantics_inside(sim: Any) -> None:
    t = sim.target
    code = t.run("curl -s -o /dev/null -w '%%{http_code}' -H 'X-aws-ec2-metadata-token: bogus' %s", f"{IMDS}/meta-data/instance-id").stdout
    assert code == "401"
    code = t.run("curl -s -o /dev/null -w '%%{http_code}' -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 0' %s", f"{IMDS}/api/token").stdout
    assert code == "400"


def test_hostname_and_hosts_after_boot(sim: Any) -> None:
    inst = describe(sim)
    t = sim.target
    assert t.run("hostname").stdout.strip() == "cephdemo"
    for name in ("cephdemo", inst["PublicDnsName"]):
        assert t.run("getent hosts %s", name).stdout.split()[0] == inst["PrivateIpAddress"]
    hosts = t.read("/etc/hosts").decode()
    assert "127.0.0.1 localhost" in hosts and "::1" in hosts
    assert inst["PublicIpAddress"] not in hosts  # the public IPv4 is on no interface


def test_boot_jobs_ran_in_order_with_logs(sim: Any) -> None:
    t = sim.target
    journal = t.run("journalctl -b -o cat --no-pager -u coa-hostname -u coa-ceph-readdress").stdout
    assert "hostname" in journal
    order = t.run(["systemctl", "show", "-p", "ExecMainStartTimestampMonotonic", "--value",
                   "coa-hostname.service", "coa-ceph-readdress.service"]).stdout.split()
    assert int(order[0]) <= int(order[1])


def test_ssh_reaches_the_instance_with_the_key_pair(sim: Any) -> None:
    state = SimState.load()
    status = sim.status()
    t = from_spec(f"ssh://admin@{status['private_ip']}:22", key_filename=str(state.key_path), retries=5, retry_delay=1)
    with t:
        assert t.run("hostname").stdout.strip() == "cephdemo"


def test_status_json_task(sim: Any) -> None:
    out = subprocess.run([sys.executable, "-m", "invoke", "sim.status", "--json", "--check"], capture_output=True, text=True, check=True).stdout
    status = json.loads(out)
    for key in ("instance_id", "container", "private_ip", "public_ip", "public_hostname", "ami_id", "ec2_endpoint", "ready"):
        assert status[key] not in (None, ""), key
    assert status["ready"] is True
    assert status["ec2_endpoint"].startswith("http://127.0.0.1:")


def test_status_json_without_checks_is_fast(sim: Any) -> None:
    """The fields a script wants, without the readiness checks: the sim's own state and one EC2 call."""
    from sim.lifecycle import Sim

    s = Sim(sim.settings, log=lambda _m: None)
    start = time.monotonic()
    status = s.status(checks=False)
    took = time.monotonic() - start
    assert status["instance_id"] == sim.status_ids()["instance_id"] and status["private_ip"] and status["public_hostname"]
    assert status["ready"] is None and status["checks"] == {}
    print(f"status without checks: {took:.3f}s")


def test_cloud_init_ran_against_the_metadata_and_left_our_names(sim: Any) -> None:
    """The distribution's cloud-init, not a stand-in: EC2 datasource, host keys, the key pair's key; our names."""
    assert_cloud_init_done_and_names_ours(sim)
    t, login = sim.target, sim.login_user()
    assert t.exists("/etc/ssh/ssh_host_ed25519_key") and not t.exists("/usr/local/sbin/sim-cloud-init")
    assert t.run("dpkg-query -W -f '${Status}' cloud-init").stdout == "install ok installed"
    key = imds_get(t, "meta-data/public-keys/0/openssh-key").strip()
    assert key.split()[:2] == t.run("cat /home/%s/.ssh/authorized_keys", login).stdout.split()[:2]


def test_an_instance_without_user_data_gets_404_for_it(sim: Any) -> None:
    """The session's instances (the build's test instance, then its relaunch) were launched without
    user-data: 404, as on EC2; cloud-init had nothing to act on (test_yy's new instance has
    user-data, and acts on it)."""
    t = sim.target
    cloud_init_result(sim)
    assert imds_get(t, "user-data", check=False) == "404"
    assert not t.exists(USER_DATA_FILE)
