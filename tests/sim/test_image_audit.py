"""The final audit on what became the AMI: the build's gate ran on it, and in a container of the built
image every planted kind, in every format, is named (``tests.plants``: the unit tier's table).

The image is opened without booting (``sim.image_audit.image_root``: ``sleep`` in a container of
the image, its root bind-mounted read-only), as the build's gate does.
"""

from __future__ import annotations

import io
import tarfile
from typing import Any

import pytest

from provision.image.audit import AuditReport, audit
from provision.progress import is_progress_line
from provision.target import Target
from sim.image_audit import MOUNT, image_root
from tests.plants import MARK, Plant, expected_path, plants

pytestmark = pytest.mark.docker

PLANTS = plants()


def _tar(items: list[Plant]) -> bytes:
    """The plants as one tar stream (root-owned, their modes), extracted at / in one command."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for p in items:
            info = tarfile.TarInfo(p.path.lstrip("/"))
            info.size, info.mode, info.uid, info.gid = len(p.content), p.mode, 0, 0
            tar.addfile(info, io.BytesIO(p.content))
    return buf.getvalue()


def test_the_build_ran_the_final_audit_on_the_builder_and_on_the_image(sim: Any) -> None:
    assert sim.built is not None, "the session's build left no log"
    out, ami = sim.built["stdout"], sim.built["ami"]
    lines = [ln for ln in out.splitlines() if not is_progress_line(ln)]
    for header in ("==> final audit", f"==> final audit of the committed image {ami}"):
        assert header in lines, header
        assert ": clean (" in lines[lines.index(header) + 1], lines[lines.index(header) + 1]


def _report_after(lines: list[str], header: str) -> list[str]:
    """The report lines the build logged after ``header``, up to the next step's header."""
    start = lines.index(header) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("==> ")), len(lines))
    return lines[start:end]


def test_the_gate_on_the_committed_image_let_no_bootstrap_key_through(sim: Any) -> None:
    """The build's own audit of the committed image (not re-run here: it scanned the same image, two
    minutes a run): its root is the image's mount, and no Ceph bootstrap keyring is among what it allowed."""
    lines = [ln for ln in sim.built["stdout"].splitlines() if not is_progress_line(ln)]
    report = _report_after(lines, f"==> final audit of the committed image {sim.built['ami']}")
    assert report and f"(root {MOUNT}): clean (" in report[0], report[:1]
    assert not [ln for ln in report if "/var/lib/ceph/bootstrap-" in ln], report


@pytest.fixture(scope="module")
def planted_report(sim: Any, docker_client: Any) -> AuditReport:
    image, disk = sim.image_of(sim.built["ami"])
    with image_root(docker_client, image, disk) as t:
        _plant(t)
        return audit(t, sim.settings, root=MOUNT)


def _plant(t: Target) -> None:
    t.run(["tar", "-x", "-p", "--same-owner", "-C", "/"], stdin=_tar(PLANTS))


@pytest.mark.parametrize("p", PLANTS, ids=[p.name for p in PLANTS])
def test_each_kind_is_named_in_the_built_image(planted_report: AuditReport, p: Plant) -> None:
    assert planted_report.kinds(expected_path(p)) == set(p.kinds), planted_report.lines()


def test_no_planted_secret_is_shown(planted_report: AuditReport) -> None:
    assert MARK not in "\n".join(planted_report.lines())
