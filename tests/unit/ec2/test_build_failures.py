"""A failure (or Ctrl-C) at each stage of the build leaves nothing behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import pytest

from provision.ec2.plan import BuilderHost
from provision.exceptions import AwsError, WaitTimeout

from .helpers import (
    NAME,
    OTHER,
    Boom,
    after,
    clients_with,
    fail_on,
    inventory,
    options,
    run_build,
)


def _stuck_running(parsed: dict[str, Any]) -> None:
    for r in parsed.get("Reservations", []):
        for i in r.get("Instances", []):
            if i["State"]["Name"] == "running":
                i["State"] = {"Code": 0, "Name": "pending"}


def _stuck_image(parsed: dict[str, Any]) -> None:
    for i in parsed.get("Images", []):
        if i.get("Name") == NAME:
            i["State"] = "pending"


def _encrypted(parsed: dict[str, Any]) -> None:
    for s in parsed.get("Snapshots", []):
        s["Encrypted"] = True


def _raise(exc: BaseException) -> Callable[..., None]:
    def f(*_: Any) -> None:
        raise exc

    return f


def interrupted_after(operation: str, region: str = "*") -> tuple[str, str, Callable[..., Any]]:
    """A hook that lets ``operation`` succeed in moto, then raises Ctrl-C before the caller sees the reply."""

    def handler(**_: Any) -> None:
        raise KeyboardInterrupt

    return (region, f"after-call.ec2.{operation}", handler)


FAILURES: dict[str, dict[str, Any]] = {
    "launch: run_instances refused": {
        "hooks": [fail_on("RunInstances", "InsufficientInstanceCapacity")],
        "error": AwsError,
        "match": "Failed to launch the builder",
    },
    "launch: key pair refused": {
        "hooks": [fail_on("ImportKeyPair", "UnauthorizedOperation")],
        "error": AwsError,
        "match": "Failed to import key pair",
    },
    "launch: Ctrl-C while run_instances is in flight": {
        "hooks": [interrupted_after("RunInstances")],
        "error": KeyboardInterrupt,
        "match": None,
    },
    "launch: never running": {"hooks": [after("DescribeInstances", _stuck_running)], "error": WaitTimeout, "match": "last state 'pending'"},
    "ssh wait: never answers": {"probe": lambda host: False, "error": WaitTimeout, "match": "SSH on builder i-"},
    "provision: callback raises": {"provision": _raise(Boom("apt-get failed")), "error": Boom, "match": "apt-get failed"},
    "provision: Ctrl-C": {"provision": _raise(KeyboardInterrupt()), "error": KeyboardInterrupt, "match": None},
    "stop: refused": {
        "hooks": [fail_on("StopInstances", "IncorrectInstanceState")],
        "error": AwsError,
        "match": "Failed to stop the builder",
    },
    "create_image: refused": {
        "hooks": [fail_on("CreateImage", "InvalidParameterValue")],
        "error": AwsError,
        "match": "Failed to create image",
    },
    "create_image: Ctrl-C while create_image is in flight": {
        "hooks": [interrupted_after("CreateImage")],
        "error": KeyboardInterrupt,
        "match": None,
    },
    "create_image: hook raises": {"on_image_created": _raise(Boom("docker commit failed")), "error": Boom, "match": "docker commit"},
    "create_image: never available": {
        "hooks": [after("DescribeImages", _stuck_image)],
        "error": WaitTimeout,
        "match": "last state 'pending'",
    },
    "create_image: snapshot tags refused": {
        "hooks": [fail_on("CreateTags", "RequestLimitExceeded")],
        "error": AwsError,
        "match": "Failed to tag",
    },
    "publish: encrypted snapshots": {
        "public": True,
        "hooks": [after("DescribeSnapshots", _encrypted)],
        "error": AwsError,
        "match": "Refusing to publish .* encrypted",
    },
    "publish: refused": {
        "public": True,
        "hooks": [fail_on("ModifyImageAttribute", "OperationNotPermitted", when=lambda p: "LaunchPermission" in p)],
        "error": AwsError,
        "match": "Failed to make ami-",
    },
    "copy: refused": {
        "regions": [OTHER],
        "hooks": [fail_on("CopyImage", "InvalidRegion", region=OTHER)],
        "error": AwsError,
        "match": "Failed to copy ami-",
    },
    "copy: made, then never available": {
        "regions": [OTHER],
        "hooks": [after("DescribeImages", _stuck_image, region=OTHER)],
        "error": WaitTimeout,
        "match": f"in {OTHER}",
    },
    "copy: made, then publish refused": {
        "regions": [OTHER],
        "public": True,
        "hooks": [fail_on("ModifyImageAttribute", "OperationNotPermitted", region=OTHER, when=lambda p: "LaunchPermission" in p)],
        "error": AwsError,
        "match": f"public in {OTHER}",
    },
}


@pytest.mark.parametrize("case", list(FAILURES), ids=list(FAILURES))
def test_failure_at_each_stage_leaves_nothing_behind(
    case: str, tmp_path: Path, ec2: Any, ec2_other: Any, source_ami: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = FAILURES[case]
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    before = inventory()
    keys: list[str] = []
    provision = spec.get("provision") or (lambda host: None)

    def tracking(host: BuilderHost) -> None:
        keys.append(host.key_path)
        provision(host)

    opts = options(tmp_path, public=spec.get("public", False), regions=spec.get("regions", []))
    with pytest.raises(spec["error"], match=spec["match"]):
        run_build(
            opts,
            tracking,
            clients=clients_with(*spec.get("hooks", [])),
            ssh_probe=spec.get("probe", lambda host: True),
            on_image_created=spec.get("on_image_created"),
        )
    assert inventory() == before
    assert not (tmp_path / "build" / "manifest.json").exists()
    assert list(temp.iterdir()) == [], "the temporary key directory is removed"
    for key in keys:
        assert not os.path.exists(key)
