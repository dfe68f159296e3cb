"""The build's test stage (moto in-process): an image whose test instance fails a check is never
published, leaves nothing behind (or, with on_error=abort, stays private with its test instance);
one that passes is published only after its test instance is gone, and the manifest says verified."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from provision.ec2.plan import BuilderHost
from provision.ec2.verify import Booted, console_tail, findings, wait_console_line, wait_rebooted
from provision.exceptions import ConnectError, ImageTestFailed, ProvisionError

from .helpers import REGION, TEST_CONSOLE, client_error, clients_with, inventory, options, passing_test_stage, run_build

HOST = BuilderHost("i-0123", REGION, None, "10.0.0.5", "", "admin", "/k")


def test_a_passing_image_is_published_after_its_test_instance_is_gone_and_marked_verified(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    before = inventory()
    order: list[str] = []
    clients = clients_with(("*", "before-call.ec2.TerminateInstances", lambda **kw: order.append("terminate")),
                           ("*", "before-parameter-build.ec2.ModifyImageAttribute",
                            lambda params, **kw: order.append("publish") if "LaunchPermission" in params else None))
    boots: dict[str, int] = {}
    result = run_build(options(tmp_path, public=True), test_stage=passing_test_stage(boots), clients=clients)
    tested = list(boots)
    assert len(tested) == 1 and boots[tested[0]] >= 2  # ready once, and again after the reboot
    assert order[0] == "terminate" and "publish" in order  # the test instance went before anyone may launch the image
    inst = ec2.describe_instances(InstanceIds=tested)["Reservations"][0]["Instances"][0]
    assert inst["State"]["Name"] == "terminated" and inst["ImageId"] == result.ami_ids[REGION]
    assert {t["Key"]: t["Value"] for t in inst["Tags"]}["ceph-openstack-ami:role"] == "test"
    assert result.timings["verify"] >= 0
    manifest = json.loads(Path(result.manifest_path).read_text())
    assert manifest["builds"][-1]["custom_data"]["verified"] == "true"
    after = inventory()
    assert after[REGION]["instances"] == before[REGION]["instances"]


def test_skip_verify_publishes_untested_and_says_so(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    logs: list[str] = []
    result = run_build(options(tmp_path, verify=False), log=logs.append)
    assert any("No test stage" in line for line in logs)
    manifest = json.loads(Path(result.manifest_path).read_text())
    assert manifest["builds"][-1]["custom_data"]["verified"] == "false"


def _failing(kind: str) -> Any:
    stage = passing_test_stage()
    if kind == "baked host key":
        return replace(stage, host_key=lambda host: "ssh-ed25519 THE-SAME", ready=lambda host: Booted(f"b{id(host)}", "ssh-ed25519 THE-SAME"))
    if kind == "no password":
        return replace(stage, console=lambda iid: "[  OK  ] Reached target multi-user.target\nlogin:\n")
    if kind == "never ready":
        def not_ready(host: BuilderHost) -> Booted:
            raise ProvisionError("Not ready after 900s: cinder-api (no answer)")
        return replace(stage, ready=not_ready)
    raise AssertionError(kind)


@pytest.mark.parametrize(("kind", "says"), [
    ("baked host key", "the builder's host key"),
    ("no password", "no admin-password line"),
    ("never ready", "cinder-api (no answer)"),
])
def test_a_failing_image_is_never_published_and_nothing_is_left(tmp_path: Path, ec2: Any, source_ami: str, kind: str, says: str) -> None:
    before = inventory()
    with pytest.raises(ImageTestFailed) as e:
        run_build(options(tmp_path, public=True), test_stage=_failing(kind))
    assert says in str(e.value) and "was not published" in str(e.value)
    assert "Pa55word" not in str(e.value)
    assert inventory() == before  # image, snapshots, builder, test instance, key pair, group: all gone
    assert not Path(options(tmp_path).manifest_path).exists()


def test_on_error_abort_keeps_the_failed_image_private_and_its_test_instance(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    logs: list[str] = []
    with pytest.raises(ImageTestFailed):
        run_build(options(tmp_path, public=True, on_error="abort"), test_stage=_failing("no password"), log=logs.append)
    images = ec2.describe_images(Owners=["self"])["Images"]
    assert len(images) == 1 and images[0]["Public"] is False
    running = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"] if i["State"]["Name"] == "running"]
    roles = sorted({t["Key"]: t["Value"] for t in i["Tags"]}["ceph-openstack-ami:role"] for i in running)
    assert roles == ["test"]  # the builder was stopped to be imaged; the test instance is kept running
    assert any("terminate-instances" in line for line in logs)


def test_the_console_is_read_after_the_first_boot_even_if_the_reboot_pushes_the_line_out(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    # EC2 keeps a console's last 64 KiB: after the reboot the first boot's line may be gone.
    boots: dict[str, int] = {}
    stage = passing_test_stage(boots)
    later = "[  OK  ] Reached target multi-user.target\nlogin:\n"
    result = run_build(options(tmp_path, public=True), test_stage=replace(stage, console=lambda iid: TEST_CONSOLE if boots[iid] == 1 else later))
    assert result.ami_ids[REGION]


def test_the_console_is_read_again_until_the_line_is_posted() -> None:
    posted = ["", "[  OK  ] Started cloud-init\n", TEST_CONSOLE, "never read"]
    waits: list[float] = []
    assert wait_console_line(lambda iid: posted.pop(0), "i-1", attempts=10, sleep=waits.append, delay=5.0) == TEST_CONSOLE
    assert waits == [5.0, 5.0] and posted == ["never read"]
    assert wait_console_line(lambda iid: "login:\n", "i-1", attempts=3, sleep=waits.append, delay=1.0) == "login:\n"
    assert waits == [5.0, 5.0, 1.0, 1.0]  # three reads, two waits between them, then the last read is returned


def test_a_kept_test_instance_stays_running_with_its_group_key_pair_and_key(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    before = inventory()
    logs: list[str] = []
    result = run_build(options(tmp_path, public=True, keep_test_instance=True), log=logs.append)
    kept = result.test_instance
    assert kept is not None
    inst = ec2.describe_instances(InstanceIds=[kept.instance_id])["Reservations"][0]["Instances"][0]
    assert inst["State"]["Name"] == "running" and inst["ImageId"] == result.ami_ids[REGION]
    after = inventory()[REGION]
    assert after["instances"] == sorted([*before[REGION]["instances"], kept.instance_id])  # the builder is gone, the test instance is not
    groups = [g["GroupId"] for g in inst["SecurityGroups"]]
    assert len(groups) == 1 and inst["KeyName"] in after["key_pairs"]
    assert ec2.describe_security_groups(GroupIds=groups)["SecurityGroups"]
    assert Path(kept.key_path).is_file()  # the temporary private key that logs in to it
    assert any(line.startswith(f"==> Kept the tested instance {kept.instance_id}") and "ssh -i" in line for line in logs)
    assert any("kept security group" in line and "delete-security-group" in line for line in logs)
    assert json.loads(Path(result.manifest_path).read_text())["builds"][-1]["custom_data"]["verified"] == "true"


def test_a_build_that_fails_after_its_test_stage_keeps_no_test_instance(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    before = inventory()

    def refuse(params: Any, **kw: Any) -> None:
        if "LaunchPermission" in params:
            raise client_error("UnauthorizedOperation", "ModifyImageAttribute")

    clients = clients_with(("*", "before-parameter-build.ec2.ModifyImageAttribute", refuse))
    with pytest.raises(ProvisionError):
        run_build(options(tmp_path, public=True, keep_test_instance=True), clients=clients)
    assert inventory() == before  # the test instance went with everything else


def test_keeping_the_test_instance_without_a_test_stage_is_refused(tmp_path: Path) -> None:
    from provision.ec2.plan import make_plan
    from provision.exceptions import ConfigError

    with pytest.raises(ConfigError, match="--skip-verify"):
        make_plan(options(tmp_path, keep_test_instance=True, verify=False), available_regions=[REGION])


def test_findings_name_each_failure() -> None:
    a, b = Booted("boot 1", "ssh-ed25519 A"), Booted("boot 2", "ssh-ed25519 A")
    assert findings("ssh-ed25519 B", a, b, TEST_CONSOLE) == []
    assert findings("ssh-ed25519 A", a, b, TEST_CONSOLE) == ["the test instance answered SSH with the builder's host key: host keys were baked into the image"]
    assert findings(None, a, a, "login:\n") == ["the reboot did not happen (the boot marker did not change)",
                                                "the console has no admin-password line after the first boot"]


def test_the_console_tail_hides_the_password() -> None:
    tail = console_tail(TEST_CONSOLE + "login:\n", lines=2)
    assert tail.endswith("login:") and "Pa55word" not in tail and "<redacted>" in tail


def test_a_reboot_is_waited_for_through_the_time_ssh_is_down() -> None:
    answers: list[Any] = [Booted("old", "k"), ConnectError("down"), ConnectError("down"), Booted("new", "k")]

    def ready(host: BuilderHost) -> Booted:
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a

    assert wait_rebooted(ready, HOST, Booted("old", "k"), attempts=10, sleep=lambda s: None, delay=0) == Booted("new", "k")
    with pytest.raises(ImageTestFailed, match="did not come back"):
        wait_rebooted(lambda h: (_ for _ in ()).throw(ConnectError("down")), HOST, Booted("old", "k"), attempts=3, sleep=lambda s: None, delay=0)
