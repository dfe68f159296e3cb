"""The least-privilege IAM policy of ``build.ami`` (``aws/build-ami-policy.json``): it names exactly
the EC2 operations the build code calls, and a whole build run by an IAM user holding only it
succeeds against moto with IAM authorization enforced; without one statement the build stops with
one line naming the missing permission. ``build.ami --dry-run`` makes nothing and names each call
the credentials may not make."""

from __future__ import annotations

import ast
import copy
import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.core import set_initial_no_auth_action_count

from provision.ec2.build import dry_run
from provision.exceptions import AwsError

from .helpers import REGION, TEST, inventory, new_session, options, run_build

ROOT = Path(__file__).resolve().parents[3]
POLICY = ROOT / "aws" / "build-ami-policy.json"
#: Requests made before the IAM user exists (create user, attach its policy, make its keys) are not checked.
SETUP_REQUESTS = 3


def policy() -> dict[str, Any]:
    return dict(json.loads(POLICY.read_text()))


def allowed(doc: dict[str, Any]) -> set[str]:
    return {a for s in doc["Statement"] if s["Effect"] == "Allow" for a in s["Action"]}


def operations_in_code() -> set[str]:
    """``ec2:Operation`` for every boto3 operation provision/ec2 names: the operation argument of
    ``call``/``try_call``/``image_request`` and any ``client.<operation>(...)``."""
    ops: set[str] = set()
    for path in (ROOT / "provision" / "ec2").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name in ("call", "try_call", "image_request") and len(node.args) >= 3 and isinstance(node.args[2], ast.Constant):
                ops.add(str(node.args[2].value))
            elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "client" \
                    and re.fullmatch(r"(describe|get|create|delete|run|stop|terminate|modify|copy|import|authorize|deregister)_[a-z_]+", func.attr):
                ops.add(func.attr)
    return {"ec2:" + "".join(part.capitalize() for part in op.split("_")) for op in ops}


def builder_session(doc: dict[str, Any]) -> boto3.session.Session:
    """A session of a new IAM user whose only permissions are ``doc``."""
    iam = boto3.client("iam", region_name=REGION)
    iam.create_user(UserName="coa-builder")
    iam.put_user_policy(UserName="coa-builder", PolicyName="build-ami", PolicyDocument=json.dumps(doc))
    key = iam.create_access_key(UserName="coa-builder")["AccessKey"]
    session = new_session()
    session._session.set_credentials(key["AccessKeyId"], key["SecretAccessKey"])  # this user's keys, not the test's
    return session


def test_the_policy_names_every_operation_the_build_calls_and_nothing_else() -> None:
    code, named = operations_in_code(), allowed(policy())
    assert code - named == set(), f"the build calls operations the policy does not allow: {sorted(code - named)}"
    assert named - code == set(), f"the policy allows operations the build never calls: {sorted(named - code)}"
    assert all(s["Effect"] == "Allow" and all(a.startswith("ec2:") for a in s["Action"]) for s in policy()["Statement"])


@set_initial_no_auth_action_count(SETUP_REQUESTS)
def test_a_whole_public_build_succeeds_with_only_the_policy(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    session = builder_session(policy())
    result = run_build(options(tmp_path, public=True), session=session)
    # Read back as that user (the test's own keys are no IAM user's: moto refuses them now).
    image = session.client("ec2", region_name=REGION).describe_images(ImageIds=[result.ami_ids[REGION]])["Images"][0]
    assert image["State"] == "available" and result.leftovers == []


@set_initial_no_auth_action_count(SETUP_REQUESTS)
def test_without_the_imaging_statement_the_build_stops_naming_the_permission(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    doc = copy.deepcopy(policy())
    doc["Statement"] = [s for s in doc["Statement"] if s["Sid"] != "ImageAndPublish"]
    session = builder_session(doc)
    with pytest.raises(AwsError) as e:
        run_build(options(tmp_path, public=True), session=session)
    text = f"{e.value.message} {e.value.hint}"
    assert "ec2:StopInstances" in text and "\n" not in e.value.message
    # Nothing the build made is left (its clean-up statement is still granted).
    assert session.client("ec2", region_name=REGION).describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["pending", "running", "stopped"]}])["Reservations"] == []


def test_a_dry_run_checks_without_making_anything(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    before = inventory()
    lines: list[str] = []
    checked = dry_run(options(tmp_path, public=True), session=TEST["session"], log=lines.append)
    assert any(source_ami in c for c in checked) and any("launch the m1.xlarge builder" in c for c in checked)
    assert any(line.startswith("    ok: import the builder's key pair") for line in lines)
    assert inventory() == before  # no instance, key pair, security group, image or volume


@set_initial_no_auth_action_count(SETUP_REQUESTS)
def test_a_dry_run_names_each_call_the_credentials_may_not_make(tmp_path: Path, ec2: Any, source_ami: str) -> None:
    doc = copy.deepcopy(policy())
    doc["Statement"] = [s for s in doc["Statement"] if s["Sid"] != "LaunchTheTemporaryBuilder"]
    session = builder_session(doc)
    with pytest.raises(AwsError) as e:
        dry_run(options(tmp_path), session=session, log=lambda line: None)
    for action in ("ec2:RunInstances", "ec2:CreateSecurityGroup", "ec2:ImportKeyPair"):
        assert action in e.value.message
    assert "aws/build-ami-policy.json" in (e.value.hint or "")
    described = session.client("ec2", region_name=REGION)
    assert described.describe_instances()["Reservations"] == [] and described.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["coa-*"]}])["SecurityGroups"] == []
