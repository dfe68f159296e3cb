"""``build.ami --dry-run``'s probes: EC2's own ``DryRun`` of each call of the build that would make
something and can be asked without anything made before it (the builder, its security group and
key pair). EC2 answers ``DryRunOperation`` when the credentials may make the call, and the
refusal (``UnauthorizedOperation``, an unknown parameter) otherwise; nothing is created.

Not probed, because their ``DryRun`` needs a resource the build makes first: stopping the
builder, imaging it, publishing, copying and the clean-up calls (``aws/build-ami-policy.json``
lists them; the build asks for them only after everything here has passed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from botocore.exceptions import BotoCoreError, ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .api import aws_error, error_code
from .plan import BuildPlan
from .shapes import launch_request

#: EC2's answer to a ``DryRun`` request it would have carried out.
WOULD_SUCCEED = "DryRunOperation"


@dataclass(frozen=True)
class Probe:
    """One ``DryRun`` request: what it checks, the operation and its parameters."""

    what: str
    operation: str
    params: Mapping[str, Any]


def probes(plan: BuildPlan, source: Mapping[str, Any]) -> list[Probe]:
    """The build's creating calls that can be asked with nothing made before them, as the build would make them."""
    launch = {k: v for k, v in launch_request(plan, source, "", "").items() if k not in ("KeyName", "SecurityGroupIds", "ClientToken")}
    group: dict[str, Any] = {"GroupName": plan.temp_name, "Description": f"ceph-openstack-ami builder {plan.build_id} (dry run)"}
    public = Ed25519PrivateKey.generate().public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return [
        Probe(f"launch the {plan.instance_type} builder from {source['ImageId']} in {plan.region}", "run_instances", launch),
        Probe(f"create the builder's security group in {plan.region}", "create_security_group", group),
        Probe(f"import the builder's key pair in {plan.region}", "import_key_pair", {"KeyName": plan.temp_name, "PublicKeyMaterial": public}),
    ]


def ask(client: Any, probe: Probe) -> str | None:
    """EC2's ``DryRun`` answer to ``probe``: None when it would succeed, else one line saying why not."""
    try:
        getattr(client, probe.operation)(DryRun=True, **probe.params)
    except ClientError as e:
        if error_code(e) == WOULD_SUCCEED:
            return None
        err = aws_error(probe.what, e)
        return f"{err.message} ({err.hint})" if err.hint else err.message
    except BotoCoreError as e:
        return aws_error(probe.what, e).message
    return f"{probe.what}: EC2 carried the request out instead of answering its DryRun"
