"""The sim's EC2 endpoint as a client sees it: moto on 127.0.0.1 with fake credentials (never real AWS)."""

from __future__ import annotations

from typing import Any

FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}


def ec2_client(endpoint: str, region: str) -> Any:
    """A boto3 EC2 client for the sim's moto server (fake credentials, never real AWS)."""
    import boto3

    return boto3.client(
        "ec2",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
