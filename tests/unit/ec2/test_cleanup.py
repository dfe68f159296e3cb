"""The LIFO cleanup registry and the idempotent removals ("already gone" is success)."""

from __future__ import annotations

from typing import Any

from botocore.stub import Stubber

from provision.ec2.cleanup import Cleanup, delete_image, delete_security_group, terminate_instances

from .helpers import (
    REGION,
    ec2_snapshots,
    image_from_instance,
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
