"""Prepare a builder for imaging: provision it, scrub it, and let the audit gate the image.

One function for both worlds: ``build.ami`` calls it over SSH on a real EC2 builder and on
the simulation's builder alike.
"""

from __future__ import annotations

from ..host import provision
from ..settings import Settings
from ..steps import Log, run_steps
from ..target import Target
from .audit import CLUSTER_KEYRINGS, AuditReport, audit, require_clean
from .scrub import ScrubStep, ServicePasswordsStep

#: What the gate allows: the cluster's own keyrings, which every instance's first boot
#: replaces (coa-ceph-keys rotates every cephx key, mon. included) before anything uses them.
IMAGE_ALLOW: tuple[str, ...] = CLUSTER_KEYRINGS


def prepare_image(target: Target, settings: Settings, profile: str, log: Log = print) -> AuditReport:
    """Provision ``target``, scrub it, then audit it; raise AuditFailed on any finding.

    The scrub removes host keys and every authorized key, so the caller must keep the
    connection it provisioned over open until the audit is done.
    """
    provision(target, settings, profile, log=log)
    run_steps(target, settings, [ServicePasswordsStep(), ScrubStep()], log)
    report = audit(target, settings, allow=IMAGE_ALLOW)
    for line in report.lines():
        log(line)
    return require_clean(report)
