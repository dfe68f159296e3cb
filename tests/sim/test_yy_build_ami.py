"""`build.ami --sim --public` end to end (the session's build, tests/sim/conftest.py), and instances of its AMI.

Runs after the other sim tests (it replaces the session's instance with a new one of the AMI).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from provision import tls
from provision.ceph import cli
from provision.openstack.identity import parse_openrc
from tests.sim import inventory
from tests.sim.conftest import RUNCMD_FILE, USER_DATA, USER_DATA_FILE
from tests.sim.names import cloud_init_result, imds_get

pytestmark = pytest.mark.docker

MANIFEST = Path("build/manifest.json")


@pytest.fixture(scope="module")
def built(sim: Any) -> dict[str, Any]:
    """The session's run of the real task, `invoke build.ami --sim --public`."""
    if sim.built is None:
        pytest.fail("no build is recorded for this sim (COA_TEST_REUSE_SIM=1 needs a sim started by a test session)")
    return sim.built


def identity(sim: Any) -> dict[str, str]:
    """What must differ between two instances of one AMI: keys, secrets, ids, the demo server."""
    t = sim.target
    return {
        "host_key": t.run("cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[1],
        "cephx": cli.ceph(t, sim.settings, "auth", "get-key", "client.volumes").stdout.strip(),
        "admin": cli.ceph(t, sim.settings, "auth", "get-key", "client.admin").stdout.strip(),
        "machine_id": t.run("cat /etc/machine-id").stdout.strip(),
        "admin_password": parse_openrc(t.read("/root/openrc").decode())["OS_PASSWORD"],
        "libvirt_secret": t.run("virsh -q -c qemu:///system secret-list | awk '{print $1}'").stdout.strip(),
        "demo_server": t.run(". /root/openrc && openstack server list -f value -c ID -c Status").stdout.strip(),
        "tls_key": t.run(["sha256sum", tls.cert_files(sim.settings).key]).stdout.split()[0],
        "tls_fingerprint": tls.served_fingerprint(t, sim.settings) or "",
    }


def test_ami_is_public_and_in_the_manifest(sim: Any, built: dict[str, Any]) -> None:
    ec2 = sim.ec2()
    perms = ec2.describe_image_attribute(ImageId=built["ami"], Attribute="launchPermission")["LaunchPermissions"]
    assert {"Group": "all"} in perms
    manifest = json.loads(MANIFEST.read_text())
    assert f"us-east-1:{built['ami']}" in manifest["builds"][-1]["artifact_id"]
    assert manifest["last_run_uuid"] == manifest["builds"][-1]["packer_run_uuid"]


def by_role(sim: Any, role: str) -> list[dict[str, Any]]:
    """The build's instances of one role (``builder``, ``test``), as moto describes them."""
    found = sim.ec2().describe_instances(Filters=[{"Name": "tag:ceph-openstack-ami:role", "Values": [role]}])["Reservations"]
    return [i for r in found for i in r["Instances"]]


def test_builder_is_gone_and_only_what_the_kept_test_instance_uses_stayed(sim: Any, built: dict[str, Any], docker_client: Any) -> None:
    ec2 = sim.ec2()
    builders, tests = by_role(sim, "builder"), by_role(sim, "test")
    assert builders and all(i["State"]["Name"] == "terminated" for i in builders)
    for i in builders:
        assert not docker_client.containers.list(all=True, filters={"name": f"coa-sim-{i['InstanceId']}"})
    # --keep-test-instance: its key pair and security group stay with it, and the build said so.
    assert len(tests) == 1
    temp_keys = [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"] if k["KeyName"] != "coa-sim"]
    assert temp_keys == [tests[0]["KeyName"]]
    groups = [g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"] if g["GroupName"] != "default"]
    assert groups == [g["GroupId"] for g in tests[0]["SecurityGroups"]]
    assert f"kept key pair {temp_keys[0]}" in built["stdout"] and f"kept security group {groups[0]}" in built["stdout"]
    assert "audit of" in built["stdout"] and ": clean" in built["stdout"]


def test_the_image_passed_its_test_stage_before_it_was_published(sim: Any, built: dict[str, Any], docker_client: Any) -> None:
    """The build booted an instance of the image, found it ready, read its console (the password
    line), rebooted it, found it ready again, and only then made the image public; it kept that
    instance as the session's (test_relaunch has replaced it since: terminated, container gone)."""
    out = built["stdout"]
    assert "==> Testing " + built["ami"] in out
    assert out.index("passed its test stage") < out.index(f"{built['ami']} is public in us-east-1")
    assert out.index("reading its console") < out.index("rebooting it") < out.index("is ready again after its reboot")
    manifest = json.loads(MANIFEST.read_text())
    assert manifest["builds"][-1]["custom_data"]["verified"] == "true"
    tests = by_role(sim, "test")
    assert [i["ImageId"] for i in tests] == [built["ami"]]
    assert f"==> Kept the tested instance {tests[0]['InstanceId']}" in out
    assert tests[0]["State"]["Name"] == "terminated"
    assert not docker_client.containers.list(all=True, filters={"name": f"coa-sim-{tests[0]['InstanceId']}"})


def test_instances_from_the_ami_are_ready_with_their_own_secrets(sim: Any, built: dict[str, Any], docker_client: Any) -> None:
    image = docker_client.images.get(f"ceph-openstack-ami/ami:{built['ami']}")

    def in_image(command: str) -> str:
        return docker_client.containers.run(image.id, ["sh", "-c", command], entrypoint=[], remove=True, network_mode="none").decode()

    baked = inventory.image_content(in_image)
    assert not [k for k in baked if k.startswith("image ssh ")], "the AMI holds SSH host keys"
    assert not [k for k in baked if "bootstrap" in k]
    # No TLS key in the image: each instance makes its own at first boot (the scrub removes secrets/*).
    key = tls.cert_files(sim.settings).key
    assert in_image(f"test -e {key}; echo $?").strip() == "1"

    # The session's instance descends from the AMI (relaunched since); a new instance of the AMI
    # must share none of its keys, secrets or ids, nor the AMI's. It is launched after `sim.down`
    # (the AMI stays, as on EC2: issue 16, point 5), from a new daemon whose moto starts with the
    # kept registration: the same description, tags and public permission as before.
    seen = [(identity(sim), inventory.inventory(sim.target, sim.settings))]
    registered = sim.ec2().describe_images(ImageIds=[built["ami"]])["Images"][0]
    down = subprocess.run([sys.executable, "-m", "invoke", "sim.down"], capture_output=True, text=True)
    assert down.returncode == 0, down.stdout + down.stderr
    status = sim.up(ami=built["ami"], user_data=USER_DATA)
    assert status["ready"] is True and status["ami_id"] == built["ami"]
    now = sim.ec2().describe_images(ImageIds=[built["ami"]])["Images"][0]
    assert (now["Name"], now["Description"], now["Public"]) == (registered["Name"], registered["Description"], True)
    assert {t["Key"]: t["Value"] for t in now["Tags"]} == {t["Key"]: t["Value"] for t in registered["Tags"]}
    seen.append((identity(sim), inventory.inventory(sim.target, sim.settings)))
    for ident, _ in seen:
        assert ident["demo_server"].endswith(" ACTIVE") and len(ident["demo_server"].splitlines()) == 1, ident["demo_server"]
    (first, first_items), (second, second_items) = seen
    for key in first:
        assert first[key] != second[key], key
    compared = sorted(first_items.keys() & second_items.keys())
    print("compared secret-bearing items:", ", ".join(compared))
    assert len(compared) >= 30 and not [n for n in first_items if "bootstrap" in n]
    assert inventory.shared(first_items, second_items) == []
    assert inventory.shared(baked, first_items) == [] and inventory.shared(baked, second_items) == []


def test_a_new_instance_acts_on_its_user_data(sim: Any) -> None:
    """The instance test_instances_from_the_ami_are_ready_with_their_own_secrets launched with a
    ``#cloud-config``: the metadata serves it and cloud-init ran its write_files and, for this
    instance, its runcmd (issue 16, point 2)."""
    t = sim.target
    cloud_init_result(sim)  # its last stage (runcmd) has finished
    assert imds_get(t, "user-data") == USER_DATA
    assert t.read(USER_DATA_FILE).decode() == "written by cloud-init from the user-data\n"
    assert t.read(RUNCMD_FILE).decode().strip() == sim.status_ids()["instance_id"]
