"""The boto3 boundary: sessions and clients, one call wrapper that turns every botocore failure
into ``AwsError("Failed to <what>: <code>: <message>")`` with a hint, and the describe helpers.

boto3 is imported here at the top: this package runs on the build host only (the boot agent
never installs ``provision/ec2/``).
"""

from __future__ import annotations

from typing import Any, Callable, Collection

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError, PartialCredentialsError

from ..exceptions import AwsError, ConfigError

#: Error codes that mean "the thing is already gone" when removing it.
GONE_CODES = frozenset(
    {
        "InvalidInstanceID.NotFound",
        "InvalidGroup.NotFound",
        "InvalidKeyPair.NotFound",
        "InvalidAMIID.NotFound",
        "InvalidAMIID.Unavailable",
        "InvalidSnapshot.NotFound",
    }
)

_CREDENTIALS_HINT = "run `aws configure`, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment"

ClientFactory = Callable[[str], Any]


def _hint_for(code: str, operation: str) -> str:
    """What a user can do about the AWS error ``code`` from ``operation``."""
    if code in {"UnauthorizedOperation", "AccessDenied", "AccessDeniedException"} or code.endswith(".Unauthorized"):
        return f"the credentials in use lack the IAM permission for ec2:{operation}; grant it or use other credentials"
    if code in {
        "AuthFailure",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "ExpiredToken",
        "RequestExpired",
    }:
        return "check the AWS credentials (`aws sts get-caller-identity`), " + _CREDENTIALS_HINT
    if code in {"RequestLimitExceeded", "Throttling", "ThrottlingException"}:
        return "AWS is throttling this account; wait a minute and retry"
    if code in {"InstanceLimitExceeded", "VcpuLimitExceeded", "MaxSpotInstanceCountExceeded"}:
        return "raise the EC2 quota for this region or choose a smaller instance type"
    if code in {"InsufficientInstanceCapacity", "Unsupported"}:
        return "EC2 has no capacity for this instance type here now; try another instance type, region or subnet"
    if code == "OptInRequired":
        return "the account is not opted in to this region or image; enable it in the console"
    if code.endswith(".NotFound") or code.endswith(".Malformed"):
        return "check the id and the region it lives in"
    return "see the AWS error above; `aws ec2` with --debug shows the full exchange"


def aws_error(what: str, exc: BaseException) -> AwsError:
    """Turn a botocore exception into one ``AwsError`` line: ``Failed to <what>: <code>: <message>``."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", "Unknown"))
        message = str(err.get("Message") or "").strip() or "(no message)"
        op = getattr(exc, "operation_name", "") or "?"
        return AwsError(f"Failed to {what}: {code}: {message}", hint=_hint_for(code, op))
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return AwsError(f"Failed to {what}: no AWS credentials found", hint=_CREDENTIALS_HINT)
    if isinstance(exc, EndpointConnectionError):
        return AwsError(
            f"Failed to {what}: cannot reach {getattr(exc, 'kwargs', {}).get('endpoint_url', 'the EC2 endpoint')}",
            hint="check the network (and, for a simulated build, that the moto server is running)",
        )
    return AwsError(f"Failed to {what}: {exc}")


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore exception ('' when it carries none)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def try_call(client: Any, what: str, operation: str, *, ignore: Collection[str] = (), **params: Any) -> dict[str, Any] | None:
    """Call ``client.<operation>(**params)``; wrap failures; return None for an ``ignore``d error code."""
    try:
        return getattr(client, operation)(**params)
    except ClientError as e:
        if error_code(e) in ignore:
            return None
        raise aws_error(what, e) from e
    except BotoCoreError as e:
        raise aws_error(what, e) from e


def call(client: Any, what: str, operation: str, **params: Any) -> dict[str, Any]:
    """Call ``client.<operation>(**params)``, turning any botocore failure into :class:`AwsError`."""
    result = try_call(client, what, operation, **params)
    assert result is not None
    return result


def start_session(session: Any = None) -> tuple[Any, list[str]]:
    """Return ``session`` (default: a new boto3 session) and the regions EC2 is offered in.

    Raises:
        AwsError: botocore cannot start a session (its configuration is broken).
    """
    try:
        sess = session or boto3.session.Session()
        return sess, sess.get_available_regions("ec2")
    except BotoCoreError as e:
        raise AwsError(f"Cannot start an AWS session: {e}", hint=_CREDENTIALS_HINT) from e


def check_region(region: str, session: Any = None) -> None:
    """Refuse a region EC2 is not offered in, before anything else is asked.

    Raises:
        ConfigError: ``region`` is not an EC2 region.
    """
    if region not in start_session(session)[1]:
        raise ConfigError(f"Unknown AWS region {region!r}", hint="e.g. us-east-1, eu-west-1")


def default_client_factory(
    session: Any = None,
    endpoint_url: str | None = None,
) -> ClientFactory:
    """A factory of EC2 clients, one per region, from ``session`` (default: a new boto3 session).

    ``endpoint_url`` points every client at another EC2 endpoint (a moto server for the simulation).
    """
    sess = session or boto3.session.Session()
    cache: dict[str, Any] = {}
    config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=10, read_timeout=60)

    def factory(region: str) -> Any:
        if region not in cache:
            cache[region] = sess.client("ec2", region_name=region, endpoint_url=endpoint_url, config=config)
        return cache[region]

    return factory


def check_credentials(session: Any) -> None:
    """Refuse early, with one line, when no AWS credentials can be found.

    Raises:
        AwsError: none are configured.
    """
    try:
        creds = session.get_credentials()
    except BotoCoreError as e:
        raise AwsError(f"Cannot load AWS credentials: {e}", hint=_CREDENTIALS_HINT) from e
    if creds is None:
        raise AwsError("No AWS credentials found", hint=_CREDENTIALS_HINT)


def describe_image(client: Any, ami_id: str, region: str) -> dict[str, Any]:
    """The description of one image (which must exist)."""
    images = call(client, f"describe image {ami_id} in {region}", "describe_images", ImageIds=[ami_id]).get("Images", [])
    if not images:
        raise AwsError(f"Image {ami_id} vanished from {region}")
    return dict(images[0])


def describe_instance(client: Any, instance_id: str, region: str) -> dict[str, Any]:
    """The description of one instance (which must exist)."""
    resp = call(client, f"describe instance {instance_id} in {region}", "describe_instances", InstanceIds=[instance_id])
    for r in resp.get("Reservations", []):
        for inst in r.get("Instances", []):
            return dict(inst)
    raise AwsError(f"Instance {instance_id} vanished from {region}")
