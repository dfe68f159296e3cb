"""Bounded waits on EC2 state: timeouts name the resource and its last state; hopeless states fail at once."""

from __future__ import annotations

import pytest
from botocore.stub import Stubber

from provision.ec2.waits import wait_image_available, wait_instance, wait_state
from provision.exceptions import AwsError, WaitTimeout

from .helpers import (
    REGION,
    offline_client,
)


def test_wait_state_times_out_naming_the_resource_and_last_state() -> None:
    slept: list[float] = []
    states = iter([("pending", ""), ("pending", ""), ("pending", "copying")])
    with pytest.raises(WaitTimeout) as e:
        wait_state(
            lambda: next(states), resource="image ami-12345678 in us-east-1", want="available", delay=7, attempts=3, sleep=slept.append
        )
    assert "image ami-12345678 in us-east-1" in e.value.message
    assert "last state 'pending' (copying)" in e.value.message
    assert "3 checks 7s apart" in e.value.message
    assert slept == [7, 7]


def test_wait_state_fails_at_once_on_a_hopeless_state() -> None:
    states = iter([("pending", ""), ("failed", "snapshot error")])
    with pytest.raises(AwsError, match=r"image ami-1 is 'failed' \(snapshot error\)") as e:
        wait_state(
            lambda: next(states), resource="image ami-1", want="available", fail={"failed"}, delay=0, attempts=10, sleep=lambda s: None
        )
    assert not isinstance(e.value, WaitTimeout)


def test_wait_image_available_with_a_stubbed_describe() -> None:
    stubbed = offline_client()
    with Stubber(stubbed) as stub:
        for _ in range(4):
            stub.add_response(
                "describe_images", {"Images": [{"ImageId": "ami-12345678", "State": "pending"}]}, {"ImageIds": ["ami-12345678"]}
            )
        with pytest.raises(WaitTimeout) as e:
            wait_image_available(stubbed, "ami-12345678", region=REGION, delay=0, attempts=4, sleep=lambda s: None)
        stub.assert_no_pending_responses()
    assert "image ami-12345678 in us-east-1" in e.value.message and "'pending'" in e.value.message


def test_wait_instance_running_refuses_a_terminated_instance() -> None:
    stubbed = offline_client()
    reply = {
        "Reservations": [
            {
                "Instances": [
                    {
                        "InstanceId": "i-12345678",
                        "State": {"Name": "terminated", "Code": 48},
                        "StateReason": {"Code": "x", "Message": "Server.InternalError"},
                    }
                ]
            }
        ]
    }
    with Stubber(stubbed) as stub:
        stub.add_response("describe_instances", reply, {"InstanceIds": ["i-12345678"]})
        with pytest.raises(AwsError, match="instance i-12345678 in us-east-1 is 'terminated' \\(Server.InternalError\\)"):
            wait_instance(stubbed, "i-12345678", "running", region=REGION, delay=0, attempts=5, sleep=lambda s: None)
