"""Reliability: reboots and relaunches in a row, metadata down at boot, a full disk, bad input.

Counts are settings: `invoke test` runs 2 reboots and 1 relaunch in a row (the suite relaunches
and reboots elsewhere too: test_relaunch, test_reboot, test_stop_start, the metadata-down and
monitor-killed boots below; CI's budget pays for no more); `invoke test --full`
(COA_TEST_FULL=1) runs 10 and 5.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from provision.ceph import cli
from provision.exceptions import DiskFull
from provision.systemd import bounded, unit_states
from tests.sim.test_ceph import boot_log, client_keys, mon_vectors, reused_keys

pytestmark = [pytest.mark.docker, pytest.mark.reliability]

FULL = os.environ.get("COA_TEST_FULL") == "1"
REBOOTS = int(os.environ.get("COA_TEST_REBOOTS", 10 if FULL else 2))
RELAUNCHES = int(os.environ.get("COA_TEST_RELAUNCHES", 5 if FULL else 1))
IMAGE = "volumes/coa-reliability"
LABEL = "ceph-openstack-ami.sim"


def rbd_images(sim: Any) -> dict[str, list[str]]:
    """Every RBD image in the project's pools."""
    return {pool: sorted(cli.rbd(sim.target, sim.settings, "ls", pool).stdout.split()) for pool in sim.settings.ceph.pools}


def checksum(sim: Any) -> str:
    r = sim.target.run(bounded(["sh", "-c", f"rbd export {IMAGE} - 2>/dev/null | sha256sum"]))
    return r.stdout.split()[0]


def test_reboots_and_relaunches_in_a_row(sim: Any) -> None:
    t = sim.target
    if IMAGE.split("/")[1] not in rbd_images(sim)["volumes"]:
        t.run(bounded(["sh", "-c", f"head -c 8388608 /dev/urandom | rbd import - {IMAGE}"]))
    want_sum, want_images = checksum(sim), rbd_images(sim)
    ids, seen_keys = [], [client_keys(t, sim.settings)]
    for n in range(REBOOTS):
        status = sim.reboot()
        assert status["ready"], f"not ready after reboot {n + 1}: {status['checks']}"
        assert (checksum(sim), rbd_images(sim)) == (want_sum, want_images), f"after reboot {n + 1}"
    for n in range(RELAUNCHES):
        status = sim.relaunch()
        ids.append(status["instance_id"])
        assert status["ready"], f"not ready after relaunch {n + 1}: {status['checks']}"
        assert (checksum(sim), rbd_images(sim)) == (want_sum, want_images), f"after relaunch {n + 1}"
        keys = client_keys(sim.target, sim.settings)
        for old in seen_keys:  # no instance reuses a key of any earlier one
            assert not reused_keys(keys, old), f"relaunch {n + 1}: {reused_keys(keys, old)} kept a key of an earlier instance"
        seen_keys.append(keys)
    assert len(set(ids)) == RELAUNCHES


def test_metadata_down_at_boot_uses_last_known_configuration(sim: Any) -> None:
    """The metadata service refuses connections (a local REJECT on the sim bridge) during a reboot."""
    rule = ["-i", "coa-sim0", "-d", "169.254.169.254", "-p", "tcp", "--dport", "80", "-j", "REJECT", "--reject-with", "tcp-reset"]
    subprocess.run(["iptables", "-I", "INPUT", *rule], check=True)
    try:
        sim.reboot(wait=False)
        from sim.instance import wait_for_systemd

        wait_for_systemd(sim.target, timeout=600)
        journal = sim.target.run("journalctl -b -o cat --no-pager -u coa-hostname -u coa-ceph-readdress").stdout
        assert "using the last-known configuration" in journal
        assert sim.target.run("hostname").stdout.strip() == "cephdemo"
    finally:
        subprocess.run(["iptables", "-D", "INPUT", *rule], check=True)
    status = sim.status()
    assert status["ready"], status["checks"]


#: A fault injected for one boot: /usr/local/bin comes before /usr/bin on the boot units' PATH, so
#: the re-addressing job's ``ceph-mon --inject-monmap`` runs this, which starts the real one and
#: SIGKILLs it mid-run (once: it removes itself). The monitor daemon's own unit calls /usr/bin/ceph-mon.
MON_KILLER = "/usr/local/bin/ceph-mon"
READDRESS_UNIT = "coa-ceph-readdress.service"
MON_KILLER_SCRIPT = """#!/bin/sh
case " $* " in
*" --inject-monmap "*)
  rm -f "$0"
  /usr/bin/ceph-mon "$@" &
  pid=$!
  # SIGKILL as soon as it holds the monitor's store open (the inject takes well under 0.1 s).
  while kill -0 "$pid" 2>/dev/null && ! ls -l "/proc/$pid/fd" 2>/dev/null | grep -q store.db; do :; done
  if kill -9 "$pid" 2>/dev/null; then echo "fault: ceph-mon --inject-monmap killed with SIGKILL (store open)" >&2
  else echo "fault: ceph-mon --inject-monmap finished before the kill" >&2; fi
  wait "$pid"
  exit 137 ;;
esac
exec /usr/bin/ceph-mon "$@"
"""


def test_monitor_killed_while_readdressing_is_completed_by_the_next_boot(sim: Any) -> None:
    """A new instance (new IP) whose re-addressing loses its ceph-mon to SIGKILL, then a reboot."""
    sim.target.put(MON_KILLER, MON_KILLER_SCRIPT, 0o755)
    try:
        before = sim.status()
        sim.relaunch(wait=False)
        t = sim.target
        deadline, state = time.monotonic() + 300, ("", "")
        while time.monotonic() < deadline and state[0] not in ("failed", "active"):  # inactive: not run yet
            time.sleep(1)
            state = unit_states(t, [READDRESS_UNIT])[READDRESS_UNIT]
        journal = t.run("journalctl -b -o cat --no-pager -u coa-ceph-readdress", check=False).stdout
        assert state == ("failed", "exit-code"), f"the re-addressing job did not fail: {state}\n{journal[-2000:]}"
        assert "fault: ceph-mon --inject-monmap killed with SIGKILL (store open)" in journal, journal[-2000:]
        assert not t.exists(MON_KILLER)

        n = len(boot_log(sim))
        status = sim.reboot()  # the same new instance boots again: its re-addressing must finish now
        assert status["ready"], status["checks"]
        ip = status["private_ip"]
        assert ip != before["private_ip"] and status["instance_id"] != before["instance_id"]
        vectors = mon_vectors(sim.target, sim.settings)
        assert f"v2:{ip}:3300" in vectors and f"v1:{ip}:6789" in vectors, vectors
        assert any(" readdress changed: " in line for line in boot_log(sim)[n:]), boot_log(sim)[n:]
    finally:
        sim.target.run(["rm", "-f", MON_KILLER], check=False)


def test_disk_too_small_stops_provisioning_before_ceph_is_touched(sim: Any) -> None:
    from provision.host import content_steps
    from provision.steps import run_steps

    huge = sim.settings.replace(ceph={"osd_count": 2, "osd_size_gib": 1_000_000})
    with pytest.raises(DiskFull, match="GiB free"):
        run_steps(sim.target, huge, content_steps(huge, "debian-12", sim.status()["private_ip"]), log=lambda _m: None)
    assert sim.target.run(["sh", "-c", "ls /var/lib/ceph/osd"]).stdout.split() == ["ceph-0"]  # no half-made OSD
    assert sim.status()["ready"]


def labelled(docker_client: Any) -> tuple[int, int, int]:
    f = {"label": LABEL}
    return (len(docker_client.containers.list(all=True, filters=f)), len(docker_client.networks.list(filters=f)),
            len(docker_client.volumes.list(filters=f)))


BAD_INPUT = [
    (["sim.up", "--instance-type", "x9.bogus"], "EC2 does not offer instance type"),
    (["sim.up", "--ami", "ami-nothex!"], "Malformed AMI id"),
    (["sim.up", "--ami", "ami-0123456789abcdef0"], "was not built in this sim"),
    (["sim.up", "--on-error", "bogus"], "Unknown --on-error value"),
    (["build.ami", "--region", "mars-1"], "Unknown AWS region"),
    (["provision.host", "--host", "127.0.0.1", "--key", "/nonexistent/key.pem"], "does not exist"),
    (["ami.audit", "--target", "telnet://host"], "Unknown target"),
    (["sim.reboot"], "No simulated instance is running"),
]


@pytest.mark.parametrize("args,message", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_one_clear_error_and_creates_nothing(args: list[str], message: str, docker_client: Any, tmp_path: Path) -> None:
    before = labelled(docker_client)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    if args[0] == "sim.reboot":
        env["COA_SIM_DIR"] = str(tmp_path)  # a machine with no sim
    r = subprocess.run([sys.executable, "-m", "invoke", *args], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode != 0
    first = r.stderr.strip().splitlines()[0]
    assert first.startswith("error: ") and message in first, r.stderr
    assert "Traceback" not in r.stderr
    assert labelled(docker_client) == before
