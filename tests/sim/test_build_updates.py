"""The session's `build.ami --sim --public` (``sim.built``, tests/sim/conftest.py) applied the distribution's updates before provisioning and
recorded the image's packages in its manifest entry (issue 14, point 5)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from provision.image.updates import installed_packages

pytestmark = pytest.mark.docker

MANIFEST = Path("build/manifest.json")
UPDATES_LINE = re.compile(r"^\[(changed|unchanged)\s*\] security updates \(apt-get full-upgrade\): (.*)$", re.M)


def entry_of(ami: str) -> dict[str, Any]:
    """The manifest entry of the build that made ``ami``."""
    builds = [b for b in json.loads(MANIFEST.read_text())["builds"] if f":{ami}" in b["artifact_id"]]
    assert builds, f"{ami} is in no manifest entry"
    return builds[-1]


def test_the_updates_ran_before_the_provisioning(sim: Any) -> None:
    assert sim.built is not None, "no build is recorded for this sim"
    out = sim.built["stdout"]
    m = UPDATES_LINE.search(out)
    assert m is not None, "the build log has no line of the updates step"
    print(f"updates on the builder: {m.group(1)}: {m.group(2)}")  # for the record: what the full-upgrade touched
    assert re.search(r"\d+ upgraded, \d+ newly installed, \d+ removed|no updates", m.group(2))
    provisioning = out.find("==> boot-agent ...")
    assert provisioning != -1 and m.start() < provisioning, "the updates come before the first provisioning step"


def test_the_manifest_lists_the_images_packages(sim: Any) -> None:
    assert sim.built is not None, "no build is recorded for this sim"
    packages = entry_of(sim.built["ami"])["packages"]
    names = {p["name"] for p in packages}
    assert {"ceph-mon", "ceph-osd", "nova-compute", "keystone"} <= names
    assert all(set(p) == {"name", "version", "architecture"} and p["version"] for p in packages)
    # What an instance of the AMI has installed is exactly what the manifest says the image holds.
    on_instance = [p._asdict() for p in installed_packages(sim.target)]
    assert on_instance == packages
