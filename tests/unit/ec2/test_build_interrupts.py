"""A failure, Ctrl-C, SIGTERM or SIGHUP at every stage of the build (moto in-process) leaves nothing.

Each :data:`POINTS` entry is a place inside one stage of :data:`~provision.ec2.plan.STAGES`: the
start of every stage (its ``==>`` log line), and inside each stage the moment that is hardest to
undo: right after a resource exists but before the build has read the reply that names it. At
each point inside a stage every one of :data:`KINDS` happens in turn (at a stage's start, one
signal and one other kind): an exception, a ``KeyboardInterrupt``, or a real signal delivered to
this process (``os.kill(os.getpid(), ...)``), which the build's handler turns into Ctrl-C. Every
build runs under AWS's one-image-per-name rule (:func:`~tests.unit.ec2.helpers.unique_names`).

Then the test asserts what the account holds. ``nothing``: exactly what it held before (no
instance running or stopped, key pair, security group, image, snapshot, volume), no snapshot
tagged with the build id, the manifest as it was, no temporary key file. Always: the signal
handlers in place before the build are back, and the build ended with the injected error (or,
when the injection hit the cleanup of a failed build, with the error that started it).
Two stages guarantee something else: once ``--force`` has deregistered the old image, the new
one under its temporary name is kept, with its snapshots (``temp_kept``); an end while a
*successful* build removes its temporaries still removes them all and keeps the image and the
manifest it made (``result_kept``).
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from provision.ec2.plan import STAGES, BuilderHost, temp_image_name
from provision.ec2.signals import Interrupted

from .helpers import (
    NAME,
    OTHER,
    REGION,
    Boom,
    client,
    clients_with,
    image_from_instance,
    inventory,
    options,
    run_build,
    snapshots_tagged,
    unique_names,
)

BUILD_ID = "5e5e5e5e-1111-2222-3333-444444444444"
TEMP_NAME = temp_image_name(NAME, BUILD_ID)
KINDS = ("failure", "KeyboardInterrupt", "SIGTERM", "SIGHUP")


class Trigger:
    """Makes ``kind`` happen the ``nth`` time it is called (once)."""

    def __init__(self, kind: str, nth: int = 1) -> None:
        self.kind, self.nth, self.calls = kind, nth, 0

    @property
    def fired(self) -> bool:
        return self.calls >= self.nth

    def __call__(self, *_: Any, **__: Any) -> None:
        self.calls += 1
        if self.calls != self.nth:
            return
        if self.kind == "failure":
            raise Boom("injected failure")
        if self.kind == "KeyboardInterrupt":
            raise KeyboardInterrupt
        os.kill(os.getpid(), getattr(signal, self.kind))
        # The handler runs in this thread at the next bytecode boundary, and raises there;
        # during a cleanup it only notes the signal, and the build goes on.
        for _tick in range(100):
            time.sleep(0.001)


def after_call(operation: str, trigger: Trigger, region: str = "*", when: Callable[[dict[str, Any]], bool] | None = None) -> list[Any]:
    """Hooks that run ``trigger`` once ``operation`` has succeeded in moto, before the build sees the reply."""
    armed = {"on": when is None}

    def arm(params: dict[str, Any], **_: Any) -> None:
        armed["on"] = when is None or when(params)

    def fire(**_: Any) -> None:
        if armed["on"]:
            trigger()

    return [(region, f"before-parameter-build.ec2.{operation}", arm), (region, f"after-call.ec2.{operation}", fire)]


@dataclass
class Point:
    """Where, in which stage, with what options, and what must remain afterwards."""

    stage: str
    arm: Callable[[Trigger], dict[str, Any]]
    options: dict[str, Any] = field(default_factory=dict)
    force: bool = False  # an older image of the name exists in REGION (and the build has --force)
    expect: str = "nothing"  # "nothing" | "temp_kept" | "result_kept"
    error: str = "injected"  # which error the build ends with: the injected one, or the provisioning's ("original")
    nth: int = 1
    old_manifest: str | None = None  # what the manifest file holds before the build


def at_log(prefix: str) -> Callable[[Trigger], dict[str, Any]]:
    return lambda t: {"log_prefix": prefix, "trigger": t}


def at_call(operation: str, region: str = "*", when: Callable[[dict[str, Any]], bool] | None = None) -> Callable[[Trigger], dict[str, Any]]:
    return lambda t: {"hooks": after_call(operation, t, region, when)}


def _fail_provisioning_then(operation: str) -> Callable[[Trigger], dict[str, Any]]:
    def arm(t: Trigger) -> dict[str, Any]:
        def provision(host: BuilderHost) -> None:
            raise Boom("apt-get failed")

        return {"hooks": after_call(operation, t), "provision": provision}

    return arm


def _launch_permission(params: dict[str, Any]) -> bool:
    return "LaunchPermission" in params


POINTS: dict[str, Point] = {
    # The start of every stage.
    "launch: start": Point("launch", at_log("==> Launching the builder")),
    "ssh_wait: start": Point("ssh_wait", at_log("==> Waiting for SSH")),
    "provision: start": Point("provision", at_log("==> Provisioning")),
    "stop: start": Point("stop", at_log("==> Stopping")),
    "create_image: start": Point("create_image", at_log("==> Creating image")),
    "verify: start": Point("verify", at_log("==> Testing")),
    "publish: start": Point("publish", at_log("==> Publishing"), {"public": True}),
    "copy: start": Point("copy", at_log("==> Copying"), {"regions": [OTHER]}),
    "replace: start": Point("replace", at_log("==> Replacing"), force=True),
    "manifest: start": Point("manifest", at_log("==> Writing the manifest")),
    "cleanup: start": Point("cleanup", at_log("==> Removing the builder"), expect="result_kept"),
    # Inside each stage, right after a resource exists.
    "launch: key pair imported": Point("launch", at_call("ImportKeyPair")),
    "launch: security group created": Point("launch", at_call("CreateSecurityGroup")),
    "launch: builder launched, its id not yet read": Point("launch", at_call("RunInstances")),
    "ssh_wait: while probing": Point("ssh_wait", lambda t: {"probe": t}),
    "provision: while provisioning": Point("provision", lambda t: {"provision": t}),
    "stop: stop requested": Point("stop", at_call("StopInstances")),
    "create_image: image requested, its id not yet read": Point("create_image", at_call("CreateImage")),
    "create_image: while its snapshots are tagged": Point("create_image", at_call("CreateTags")),
    "create_image: in the on_image_created hook": Point("create_image", lambda t: {"on_image_created": t}),
    "verify: test instance launched, its id not yet read": Point("verify", at_call("RunInstances"), nth=2),
    "verify: reboot requested": Point("verify", at_call("RebootInstances")),
    "publish: launch permission granted": Point("publish", at_call("ModifyImageAttribute", when=_launch_permission), {"public": True}),
    "copy: copy requested, its id not yet read": Point("copy", at_call("CopyImage", OTHER), {"regions": [OTHER]}),
    "copy: while the copy's snapshots are tagged": Point("copy", at_call("CreateTags", OTHER), {"regions": [OTHER]}),
    "replace: old image deregistered": Point("replace", at_call("DeregisterImage"), force=True, expect="temp_kept"),
    "replace: final image requested, its id not yet read": Point(
        "replace", at_call("CreateImage"), force=True, expect="temp_kept", nth=2
    ),
    # An unreadable manifest is logged about from inside write_manifest, before the new one is written.
    "manifest: while written": Point("manifest", at_log("    (the existing manifest"), old_manifest="{not json"),
    "cleanup: while the temporaries of a good build are removed": Point("cleanup", at_call("DeleteKeyPair"), expect="result_kept"),
    "cleanup: while a failed build's builder is terminated": Point(
        "cleanup", _fail_provisioning_then("TerminateInstances"), error="original"
    ),
}


def _kinds(index: int, name: str) -> tuple[str, ...]:
    """Every kind inside each stage; at the start of a stage one signal and one other kind, in turn
    (the start of a stage holds the same resources as the point before it: this keeps the tier fast)."""
    if not name.endswith(": start"):
        return KINDS
    return (("SIGTERM", "SIGHUP")[index % 2], ("failure", "KeyboardInterrupt")[(index // 2) % 2])


CASES = [(point, kind) for i, point in enumerate(POINTS) for kind in _kinds(i, point)]


def test_every_stage_has_points_and_every_kind_is_injected_in_each() -> None:
    assert {p.stage for p in POINTS.values()} == set(STAGES)
    assert {p.stage for name, p in POINTS.items() if name.endswith(": start")} == set(STAGES)
    for stage in STAGES:
        assert {k for name, k in CASES if POINTS[name].stage == stage} == set(KINDS), stage
    starts = [k for name, k in CASES if name.endswith(": start")]
    assert set(starts) == set(KINDS)


def _expected_error(point: Point, kind: str) -> tuple[type[BaseException], str | None]:
    if point.error == "original":
        return Boom, "apt-get failed"
    if kind == "failure":
        return Boom, "injected failure"
    if kind == "KeyboardInterrupt":
        return KeyboardInterrupt, None
    return Interrupted, f"{kind} received"


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the build's temporary key directory goes."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return temp


@pytest.mark.parametrize(("point_name", "kind"), CASES, ids=[f"{p} / {k}" for p, k in CASES])
def test_an_end_at_every_stage_leaves_nothing(
    point_name: str, kind: str, tmp_path: Path, temp_dir: Path, ec2: Any, ec2_other: Any, source_ami: str
) -> None:
    point = POINTS[point_name]
    old = image_from_instance(ec2, NAME) if point.force else None
    before = inventory()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    trigger = Trigger(kind, point.nth)
    armed = point.arm(trigger)
    logs: list[str] = []

    def log(line: str) -> None:
        logs.append(line)
        if "log_prefix" in armed and line.startswith(armed["log_prefix"]):
            armed["trigger"]()

    keys: list[str] = []
    provision = armed.get("provision")

    def tracking(host: BuilderHost) -> None:
        keys.append(host.key_path)
        if provision is not None:
            provision(host)

    manifest = tmp_path / "build" / "manifest.json"
    if point.old_manifest is not None:
        manifest.parent.mkdir(parents=True)
        manifest.write_text(point.old_manifest)

    error, match = _expected_error(point, kind)
    opts = options(tmp_path, force=point.force, **point.options)
    outcome: dict[str, Any] = {}
    try:
        outcome["result"] = run_build(
            opts,
            tracking,
            clients=clients_with(*armed.get("hooks", []), *unique_names(REGION, OTHER)),
            ssh_probe=armed.get("probe") or (lambda host: True),
            on_image_created=armed.get("on_image_created"),
            log=log,
            build_id=BUILD_ID,
        )
    except BaseException as e:  # noqa: BLE001 - checked below
        outcome["error"] = e

    assert trigger.fired, "the injection point was not reached"
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers, "the signal handlers before the build are restored"
    assert list(temp_dir.iterdir()) == [], "the temporary key directory is removed"
    assert not any(os.path.exists(k) for k in keys)
    now = inventory()
    for region in (REGION, OTHER):
        for kind_of in ("instances", "key_pairs", "security_groups", "volumes"):
            assert now[region][kind_of] == before[region][kind_of], (region, kind_of)

    if point.expect == "result_kept":
        _check_result_kept(outcome, kind, point_name, manifest, before, now, logs)
        return
    got = outcome.get("error")
    assert isinstance(got, error), f"ended with {got!r}, not {error.__name__}"
    if match:
        assert match in str(got)
    assert (manifest.read_text() if manifest.exists() else None) == point.old_manifest, "the manifest is as it was"
    if point.expect == "nothing":
        assert now == before
        assert snapshots_tagged(BUILD_ID) == {REGION: [], OTHER: []}
    else:
        _check_temp_kept(old, before, now, logs)


def _check_temp_kept(old: str | None, before: dict[str, Any], now: dict[str, Any], logs: list[str]) -> None:
    """The old image is gone; the build's image under the temporary name is kept, available, with its tagged snapshots only."""
    (kept,) = client(REGION).describe_images(Owners=["self"])["Images"]
    assert kept["ImageId"] != old and kept["Name"] == TEMP_NAME and kept["State"] == "available"
    snaps = sorted(b["Ebs"]["SnapshotId"] for b in kept["BlockDeviceMappings"])
    assert now[REGION]["snapshots"] == snaps == snapshots_tagged(BUILD_ID)[REGION]
    assert now[OTHER] == before[OTHER]
    assert any(f"kept {kept['ImageId']} ({TEMP_NAME!r})" in line and "aws ec2 copy-image" in line for line in logs)


def _check_result_kept(
    outcome: dict[str, Any], kind: str, point_name: str, manifest: Path, before: dict[str, Any], now: dict[str, Any], logs: list[str]
) -> None:
    """A good build's images and manifest stay; every temporary is gone; a signal still ends the build non-zero."""
    images = client(REGION).describe_images(Owners=["self"])["Images"]
    assert [i["Name"] for i in images] == [NAME]
    entry = json.loads(manifest.read_text())["builds"][-1]
    assert entry["artifact_id"] == f"{REGION}:{images[0]['ImageId']}"
    assert now[REGION]["snapshots"] == snapshots_tagged(BUILD_ID)[REGION] == [b["Ebs"]["SnapshotId"] for b in images[0]["BlockDeviceMappings"]]
    if kind in ("SIGTERM", "SIGHUP"):
        assert isinstance(outcome.get("error"), Interrupted) and f"{kind} received during the cleanup" in str(outcome["error"])
        assert any(f"!!! {kind} received: finishing the cleanup first" in line for line in logs)
    elif point_name == "cleanup: start":
        expected = Boom if kind == "failure" else KeyboardInterrupt
        assert isinstance(outcome.get("error"), expected), "raised once the cleanup has run"
    else:
        # Inside one removal: that removal is reported with its manual command, the others ran.
        result = outcome["result"]
        (line,) = result.leftovers
        assert line.startswith("key pair ") and "remove it with: aws ec2 delete-key-pair" in line
