"""Prepare a builder for imaging: provision, scrub, quiesce, scrub again, and the final audit as the gate.

One function for both worlds: ``build.ami`` calls it over SSH on a real EC2 builder and on
the simulation's builder alike. The order, and why:

1. **provision** the builder;
2. **scrub** (the builder's demo server and key pair, the build's OpenStack passwords, then
   :class:`~provision.image.scrub.ScrubStep`) while the services still run (what they hold in memory is renewed at every first boot);
3. **quiesce** (:class:`~provision.image.quiesce.QuiesceStep`): every service of the image that
   writes is stopped, the journal moved to ``/run``;
4. **scrub** again: what the services wrote while running and stopping (logs, journal,
   temporary files) and what only a stopped service lets go (RabbitMQ's Erlang cookie);
5. the **final audit**, with nothing left to write: any finding raises
   :class:`~provision.exceptions.AuditFailed`, so ``build.ami`` never stops the builder
   for an image, never calls ``create_image`` and never publishes.

There is no audit of the running builder: it would find nothing the final audit does not
(the gate scans the same disk a few minutes later, with nothing left writing) and it cost
about two minutes of every build (116 s measured in the sim).

The simulation audits once more, on the committed image itself (``sim.image_audit``).
"""

from __future__ import annotations

from ..host import provision
from ..settings import Settings
from ..steps import Log, run_steps
from ..target import Target
from .audit import CLUSTER_KEYRINGS, AuditReport, audit, require_clean
from .quiesce import QuiesceStep
from .scrub import DemoServerStep, ScrubStep, ServicePasswordsStep

#: The service databases the first boot of every instance renews the credentials of: MariaDB's
#: users and the services' passwords (``coa-openstack-secrets``), RabbitMQ's user (its definitions,
#: written by ``coa-openstack-broker`` and imported at the broker's start), every cephx key in the monitor's store (``coa-ceph-keys``). What they hold of the
#: build is no longer valid on any instance by the time a service is reachable.
ROTATED_DATABASES: tuple[str, ...] = (
    "service-database:/var/lib/mysql",
    "service-database:/var/lib/rabbitmq/mnesia",
    "service-database:/var/lib/ceph/mon/*/store.db",
)
#: What the gate allows: the cluster's own keyrings, which every instance's first boot
#: replaces (coa-ceph-keys rotates every cephx key, mon. included) before anything uses them,
#: and the databases of :data:`ROTATED_DATABASES`. Every allowed finding stays in the report.
IMAGE_ALLOW: tuple[str, ...] = CLUSTER_KEYRINGS + ROTATED_DATABASES


def final_audit(target: Target, settings: Settings, log: Log = print, root: str = "/", what: str = "final audit") -> AuditReport:
    """The gate: audit with :data:`IMAGE_ALLOW` only, log the report, raise AuditFailed on any finding."""
    log(f"==> {what}")
    report = audit(target, settings, root=root, allow=IMAGE_ALLOW)
    for line in report.lines():
        log(line)
    return require_clean(report)


def prepare_image(target: Target, settings: Settings, profile: str, log: Log = print) -> AuditReport:
    """Provision ``target``, scrub it, quiesce it, scrub it again, then the final audit (the gate).

    The scrub removes host keys and every authorized key, so the caller must keep the
    connection it provisioned over open until the final audit is done; after it, nothing of
    the image runs but sshd and systemd, and the caller stops the builder.

    Raises:
        AuditFailed: the final audit found something that must not be in a public image.
    """
    provision(target, settings, profile, log=log)
    run_steps(target, settings, [DemoServerStep(), ServicePasswordsStep(), ScrubStep()], log)
    run_steps(target, settings, [QuiesceStep(profile), ScrubStep()], log)
    return final_audit(target, settings, log)
