"""Fixtures of the EC2 tests: a moto EC2 with a small image catalogue, the test's session and clients."""

from __future__ import annotations

from typing import Any, Iterator

import boto3
import pytest
from moto import mock_aws

from .helpers import CATALOGUE, DEBIAN_NEW, OTHER, REGION, TEST, FreshCopies, client, new_session


@pytest.fixture
def aws(aws_credentials: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A moto EC2 whose public images are the small catalogue of helpers; clients are created inside it.

    moto loads ~1,200 default images per region (seconds per test). Setting
    MOTO_AMIS_PATH makes it load only ``moto.ec2.models.amis.AMIS``, which is
    replaced for this test only.
    """
    import moto.ec2.models.amis as moto_amis

    monkeypatch.setenv("MOTO_AMIS_PATH", "(catalogue set by the test)")
    monkeypatch.setattr(moto_amis, "AMIS", FreshCopies(CATALOGUE))
    with mock_aws():
        yield


@pytest.fixture
def session(aws: None) -> Iterator[boto3.session.Session]:
    """The test's boto3 session; builds and helpers use it unless told otherwise."""
    TEST["session"], TEST["clients"] = new_session(), {}
    yield TEST["session"]
    TEST["session"], TEST["clients"] = None, {}


@pytest.fixture
def ec2(session: boto3.session.Session) -> Any:
    return client(REGION)


@pytest.fixture
def ec2_other(session: boto3.session.Session) -> Any:
    return client(OTHER)


@pytest.fixture
def source_ami(ec2: Any) -> str:
    """The image the Debian profile must pick: Debian's newest amd64 bookworm image."""
    return DEBIAN_NEW
