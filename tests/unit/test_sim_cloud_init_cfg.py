"""The sim's one cloud-init drop-in: only what a container forces, each setting with its reason."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CONTAINER_CFG = ROOT / "sim/files/cloud.cfg.d/95-sim-container.cfg"


def test_only_the_datasource_its_platform_and_the_network_differ() -> None:
    cfg = yaml.safe_load(CONTAINER_CFG.read_text())
    assert cfg == {"datasource_list": ["Ec2", "None"], "datasource_pkg_list": ["coa_sim_cloudinit"], "network": {"config": "disabled"}}


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


def test_the_platform_shim_is_installed_where_the_pkg_list_looks() -> None:
    recipe = (ROOT / "Dockerfile.ubuntu").read_text()
    assert "sim/files/cloud-init/DataSourceEc2.py /tmp/coa_sim_cloudinit/DataSourceEc2.py" in recipe
    assert "mv /tmp/coa_sim_cloudinit /usr/lib/python3/dist-packages/" in recipe
