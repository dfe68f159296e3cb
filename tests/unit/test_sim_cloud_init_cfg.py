"""The sim's one cloud-init drop-in: only what a container forces, each setting with its reason."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CONTAINER_CFG = ROOT / "sim/files/cloud.cfg.d/95-sim-container.cfg"


def test_only_the_datasource_and_the_network_differ() -> None:
    cfg = yaml.safe_load(CONTAINER_CFG.read_text())
    assert cfg == {"datasource_list": ["Ec2", "None"], "datasource": {"Ec2": {"strict_id": False}}, "network": {"config": "disabled"}}


def test_every_setting_says_why() -> None:
    """Each line that sets something comes right after a comment line (its reason)."""
    lines = CONTAINER_CFG.read_text().splitlines()
    for n, line in enumerate(lines):
        if line.strip() and not line.lstrip().startswith("#") and not line.rstrip().endswith(":"):
            assert lines[n - 1].lstrip().startswith("#"), f"{CONTAINER_CFG.name}:{n + 1} sets {line.strip()!r} without a reason above it"


def test_the_image_recipe_installs_the_distributions_cloud_init_and_no_stand_in() -> None:
    recipe = (ROOT / "Dockerfile.ubuntu").read_text()
    assert " cloud-init " in recipe.replace("\\\n", " ") and "95-sim-container.cfg" in recipe
    assert "sim-cloud-init" not in recipe and not (ROOT / "sim/files/sim-cloud-init").exists()
