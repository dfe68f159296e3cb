"""The boto3 boundary: botocore failures become one line with a hint."""

from __future__ import annotations

from botocore.exceptions import NoCredentialsError

from provision.ec2.api import aws_error

from .helpers import (
    client_error,
)


def test_no_credentials_mid_call_is_one_line() -> None:
    err = aws_error("launch the builder", NoCredentialsError())
    assert err.message == "Failed to launch the builder: no AWS credentials found"
    assert "aws configure" in (err.hint or "")


def test_client_errors_become_one_line_with_a_hint() -> None:
    err = aws_error("launch the builder", client_error("UnauthorizedOperation", "RunInstances", "You are not authorized"))
    assert err.message == "Failed to launch the builder: UnauthorizedOperation: You are not authorized"
    assert "ec2:RunInstances" in (err.hint or "")
