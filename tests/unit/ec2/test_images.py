"""Images: publishability (block public access: moto cannot tell; Stubber gives both answers) and source images."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from botocore.stub import Stubber

from provision.ec2.images import check_can_publish, describe_source_image, find_source_image
from provision.exceptions import AwsError, ConfigError
from provision.profiles import DEBIAN_12, UBUNTU_24_04

from .helpers import (
    DEBIAN_NEW,
    DEBIAN_OLD,
    REGION,
    offline_client,
)


def _stubbed(bpa: str | None, ebs_default: bool) -> tuple[Any, Stubber]:
    stubbed = offline_client()
    stub = Stubber(stubbed)
    if bpa is None:
        stub.add_client_error("get_image_block_public_access_state", "InvalidAction", "not supported")
    else:
        stub.add_response("get_image_block_public_access_state", {"ImageBlockPublicAccessState": bpa})
    stub.add_response("get_ebs_encryption_by_default", {"EbsEncryptionByDefault": ebs_default})
    return stubbed, stub


def test_publish_refused_when_block_public_access_is_on() -> None:
    stubbed = offline_client()
    with Stubber(stubbed) as stub:
        stub.add_response("get_image_block_public_access_state", {"ImageBlockPublicAccessState": "block-new-sharing"})
        with pytest.raises(AwsError, match="block public access is 'block-new-sharing'") as e:
            check_can_publish(stubbed, REGION, lambda s: None)
    assert "disable-image-block-public-access" in (e.value.hint or "")


@pytest.mark.parametrize("bpa", ["unblocked", None])
def test_publish_allowed_when_unblocked_or_unknown(bpa: str | None) -> None:
    logs: list[str] = []
    stubbed, stub = _stubbed(bpa, ebs_default=False)
    with stub:
        check_can_publish(stubbed, REGION, logs.append)
        stub.assert_no_pending_responses()
    assert any("cannot tell" in line for line in logs) == (bpa is None)


def test_publish_refused_when_ebs_encryption_by_default_is_on() -> None:
    stubbed, stub = _stubbed("unblocked", ebs_default=True)
    with stub, pytest.raises(AwsError, match="EBS encryption by default is on"):
        check_can_publish(stubbed, REGION, lambda s: None)


# --- source images ---------------------------------------------------------------------------------


def test_find_source_image_takes_the_publishers_newest(ec2: Any) -> None:
    image = find_source_image(ec2, DEBIAN_12, REGION)
    # Not the newer arm64 image, not debian-11, not a look-alike from another account.
    assert image["ImageId"] == DEBIAN_NEW
    assert find_source_image(ec2, UBUNTU_24_04, REGION)["ImageId"] == "ami-0c0a000000000001"
    nothing = dataclasses.replace(UBUNTU_24_04, source_name_pattern="ubuntu/images/hvm-ssd-gp3/ubuntu-plucky-*")
    with pytest.raises(ConfigError, match="No Ubuntu 24.04 LTS \\(noble\\) image named .*ubuntu-plucky"):
        find_source_image(ec2, nothing, REGION)


def test_explicit_source_ami_must_exist_and_match_the_architecture(ec2: Any) -> None:
    assert describe_source_image(ec2, DEBIAN_OLD, REGION, DEBIAN_12)["ImageId"] == DEBIAN_OLD
    with pytest.raises(ConfigError, match="is arm64, but profile debian-12 is x86_64"):
        describe_source_image(ec2, "ami-0d1e000000000003", REGION, DEBIAN_12)
    with pytest.raises(ConfigError, match="does not exist in us-east-1"):
        describe_source_image(ec2, "ami-0123456789abcdef0", REGION, DEBIAN_12)
