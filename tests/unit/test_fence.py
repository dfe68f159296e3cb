"""The first-boot fence: its nftables rules (checked by the real nft) and where its units sit in the boot."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from provision.boot import fence
from provision.boot.jobs import FENCE_UNIT, jobs
from provision.boot.units import render_unit
from provision.settings import Settings


def nft_check(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    nft = shutil.which("nft") or "/usr/sbin/nft"
    if not Path(nft).exists():
        pytest.fail("nft is not installed: apt-get install nftables (.ci/run installs it)")
    path = tmp_path / "rules.nft"
    path.write_text(text)
    return subprocess.run([nft, "-c", "-f", str(path)], capture_output=True, text=True)


def test_the_rules_are_valid_nftables(tmp_path: Path) -> None:
    for text in (fence.render_fence(), fence.render_unfence()):
        r = nft_check(text, tmp_path)
        assert r.returncode == 0, r.stderr


def test_the_fence_drops_new_inbound_connections_except_ssh_and_what_the_network_needs() -> None:
    text = fence.render_fence()
    assert "policy drop;" in text and "hook input" in text
    for rule in ('iifname "lo" accept', "ct state established,related accept", "tcp dport 22 accept",
                 "udp sport 67 udp dport 68 accept"):
        assert rule in text
    assert "tcp dport 2222 accept" in fence.render_fence(ssh_port=2222)


def test_the_fence_is_up_before_the_network_and_every_secret_job_needs_it() -> None:
    by_name = {j.name: j for j in jobs(Settings())}
    unit = render_unit(by_name["fence"])
    assert "Before=network-pre.target" in unit and "DefaultDependencies=no" in unit
    assert f"ExecStart={fence.NFT} -f {fence.FENCE_RULES}" in unit
    secret_jobs = [j for j in by_name.values() if j.secrets]
    assert {j.name for j in secret_jobs} >= {"ceph-keys", "openstack-secrets"}
    for j in secret_jobs:
        text = render_unit(j)
        assert any(line.startswith("Requires=") and FENCE_UNIT in line for line in text.splitlines())


def test_the_fence_comes_down_only_after_every_secret_job_succeeded() -> None:
    all_jobs = jobs(Settings())
    unfence = all_jobs[-1]
    assert unfence.name == "unfence"
    text = render_unit(unfence)
    requires = next(line for line in text.splitlines() if line.startswith("Requires=")).split("=", 1)[1].split()
    after = next(line for line in text.splitlines() if line.startswith("After=")).split("=", 1)[1].split()
    wanted = {FENCE_UNIT, *(j.unit for j in all_jobs if j.secrets)}
    assert set(requires) == wanted and wanted <= set(after)
    assert f"ExecStart={fence.NFT} -f {fence.UNFENCE_RULES}" in text
