"""``invoke ami.deregister``: the image and every snapshot behind it go; an unknown image is one clear error."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from provision.ec2.deregister import deregister_ami
from provision.exceptions import AwsError
from provision.settings import Settings

from .helpers import REGION, image_from_instance


def test_the_image_and_its_snapshots_go(ec2: Any, session: boto3.session.Session) -> None:
    ami = image_from_instance(ec2, "coa-test-deregister")
    snaps = [m["Ebs"]["SnapshotId"] for m in ec2.describe_images(ImageIds=[ami])["Images"][0]["BlockDeviceMappings"] if "Ebs" in m]
    assert snaps
    removed = deregister_ami(Settings(region=REGION), ami, session=session)
    assert removed[0] == f"image {ami} (coa-test-deregister)" and sorted(removed[1:]) == sorted(f"snapshot {s}" for s in snaps)
    assert ec2.describe_images(Owners=["self"], Filters=[{"Name": "image-id", "Values": [ami]}])["Images"] == []
    left = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert not left & set(snaps)


def test_an_image_that_is_not_there_is_one_clear_error(ec2: Any, session: boto3.session.Session) -> None:
    ami = image_from_instance(ec2, "coa-test-deregister-twice")
    deregister_ami(Settings(region=REGION), ami, session=session)
    with pytest.raises(AwsError) as e:
        deregister_ami(Settings(region=REGION), ami, session=session)
    assert ami in str(e.value)
