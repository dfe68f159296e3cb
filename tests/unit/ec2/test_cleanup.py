"""The LIFO cleanup registry and the idempotent removals ("already gone" is success)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.stub import Stubber

from provision.ec2.cleanup import (
    Cleanup,
    delete_image,
    delete_leftover_snapshots,
    delete_security_group,
    delete_snapshots_once_deregistered,
    terminate_instances,
)
from provision.ec2.plan import BUILD_ID_TAG
from provision.exceptions import AwsError

from .helpers import (
    REGION,
    ec2_snapshots,
    image_from_instance,
    inventory,
    offline_client,
)


def test_cleanup_runs_newest_first_keeps_going_and_reports() -> None:
    done: list[str] = []
    c = Cleanup(log=lambda s: None)
    c.add("first", lambda: done.append("first"))
    h = c.add("kept", lambda: done.append("kept"))
    c.add("broken", lambda: (_ for _ in ()).throw(RuntimeError("boom")), "rm broken")
    c.add("last", lambda: done.append("last"))
    c.keep(h)
    assert [label for label, _ in c.pending()] == ["last", "broken", "first"]
    failures = c.run()
    assert done == ["last", "first"]
    assert failures == ["broken: boom; remove it with: rm broken"]
    assert len(c) == 0 and c.run() == []


def test_cleanup_survives_ctrl_c_in_one_action() -> None:
    done: list[str] = []

    def interrupted() -> None:
        raise KeyboardInterrupt

    c = Cleanup(log=lambda s: None)
    c.add("a", lambda: done.append("a"))
    c.add("b", interrupted)
    assert c.run() == ["b: interrupted"]
    assert done == ["a"]


def test_removing_what_is_already_gone_is_success(ec2: Any) -> None:
    ami = image_from_instance(ec2, "gone-twice")
    snaps = ec2_snapshots(ec2, ami)
    assert delete_image(ec2, ami, REGION) is True
    assert delete_image(ec2, ami, REGION, snaps) is False
    assert delete_image(ec2, "ami-12345678", REGION, ["snap-12345678"]) is False
    terminate_instances(ec2, ["i-1234567890abcdef0"], REGION, delay=0, attempts=1)
    delete_security_group(ec2, "sg-12345678", REGION, delay=0, attempts=1)


def test_terminate_waits_until_terminated() -> None:
    stubbed = offline_client()

    def reply(state: str) -> dict[str, Any]:
        return {"Reservations": [{"Instances": [{"InstanceId": "i-12345678", "State": {"Name": state, "Code": 0}}]}]}

    slept: list[float] = []
    with Stubber(stubbed) as stub:
        stub.add_response("terminate_instances", {}, {"InstanceIds": ["i-12345678"]})
        for state in ("shutting-down", "shutting-down", "terminated"):
            stub.add_response("describe_instances", reply(state), {"InstanceIds": ["i-12345678"]})
        terminate_instances(stubbed, ["i-12345678"], REGION, delay=2, attempts=5, sleep=slept.append)
        stub.assert_no_pending_responses()
    assert slept == [2, 2]


def test_security_group_still_in_use_is_retried() -> None:
    stubbed = offline_client()
    with Stubber(stubbed) as stub:
        stub.add_client_error("delete_security_group", "DependencyViolation", "in use")
        stub.add_response("delete_security_group", {})
        delete_security_group(stubbed, "sg-12345678", REGION, delay=0, attempts=3, sleep=lambda s: None)
        stub.assert_no_pending_responses()


def test_terminate_that_cannot_be_confirmed_says_so() -> None:
    stubbed = offline_client()
    pending = {"Reservations": [{"Instances": [{"InstanceId": "i-12345678", "State": {"Name": "shutting-down", "Code": 32}}]}]}
    with Stubber(stubbed) as stub:
        stub.add_response("terminate_instances", {}, {"InstanceIds": ["i-12345678"]})
        stub.add_response("describe_instances", pending, {"InstanceIds": ["i-12345678"]})
        stub.add_response("describe_instances", pending, {"InstanceIds": ["i-12345678"]})
        with pytest.raises(AwsError, match="Termination of i-12345678 requested but not confirmed: Timed out") as e:
            terminate_instances(stubbed, ["i-12345678"], REGION, delay=0, attempts=2, sleep=lambda s: None)
        stub.assert_no_pending_responses()
    assert e.value.hint


def test_a_pending_image_without_mappings_loses_its_snapshots_found_by_description() -> None:
    """On AWS a just-requested image may not list its snapshots yet; EC2's description of them names it."""
    stubbed = offline_client()
    ami, snap = "ami-0123456789abcdef0", "snap-0123456789abcdef0"
    with Stubber(stubbed) as stub:
        stub.add_response("describe_images", {"Images": [{"ImageId": ami, "State": "pending"}]}, {"ImageIds": [ami]})
        stub.add_response(
            "describe_snapshots",
            {"Snapshots": [{"SnapshotId": snap, "Description": f"Created by CreateImage(i-0123456789abcdef0) for {ami}"}]},
            {"OwnerIds": ["self"], "Filters": [{"Name": "description", "Values": [f"*{ami}*"]}]},
        )
        stub.add_response("deregister_image", {}, {"ImageId": ami})
        stub.add_response("delete_snapshot", {}, {"SnapshotId": snap})
        assert delete_image(stubbed, ami, REGION) is True
        stub.assert_no_pending_responses()


def _tag(ec2: Any, ids: list[str], build_id: str) -> None:
    ec2.create_tags(Resources=ids, Tags=[{"Key": BUILD_ID_TAG, "Value": build_id}])


def test_the_snapshot_sweep_spares_the_images_the_build_keeps(ec2: Any) -> None:
    kept = image_from_instance(ec2, "kept-image")
    _tag(ec2, [kept, *ec2_snapshots(ec2, kept)], "b-1")
    gone = image_from_instance(ec2, "half-made-image")
    gone_snaps = ec2_snapshots(ec2, gone)
    _tag(ec2, gone_snaps, "b-1")
    ec2.deregister_image(ImageId=gone)  # as an interrupted removal leaves it
    other = image_from_instance(ec2, "another-build")
    _tag(ec2, ec2_snapshots(ec2, other), "b-2")
    before = set(inventory()[REGION]["snapshots"])
    assert delete_leftover_snapshots(ec2, "b-1", REGION) == gone_snaps
    assert set(inventory()[REGION]["snapshots"]) == before - set(gone_snaps)


def test_finishing_a_removal_touches_nothing_while_the_image_is_registered(ec2: Any) -> None:
    ami = image_from_instance(ec2, "still-here")
    snaps = ec2_snapshots(ec2, ami)
    delete_snapshots_once_deregistered(ec2, ami, snaps, REGION)
    assert set(snaps) <= set(inventory()[REGION]["snapshots"])
    ec2.deregister_image(ImageId=ami)
    delete_snapshots_once_deregistered(ec2, ami, snaps, REGION)
    assert not set(snaps) & set(inventory()[REGION]["snapshots"])
