"""The boot jobs: what each one does (a thin adapter to the concern module) and how its unit is ordered.

Per-boot jobs run at every boot and do nothing when nothing changed; per-instance jobs run once
for each new instance-id (see :mod:`.runner`).
"""

from __future__ import annotations

import dataclasses

from .. import hostname, tls
from ..ceph import boot as ceph_boot
from ..ceph import keys as ceph_keys
from ..openstack.instance import reconcile, rotate_broker, rotate_secrets
from ..openstack.server import ensure_demo_server
from ..openstack.volume import ensure_boot_volume
from ..paths import AGENT_UNITS, COMPUTE_UNITS, OPENSTACK_UNITS, ceph_units
from ..settings import Settings
from ..steps import StepResult
from . import fence
from .context import BootContext, BootJob
from .netinfo import local_ipv4


def hostname_job(ctx: BootContext) -> StepResult:
    """Static hostname and /etc/hosts from the metadata (local IPv4 cross-checked with the route)."""
    local = ctx.info.local_ipv4
    src = local_ipv4(ctx.target, ctx.settings)
    if src and src != local:
        ctx.log(f"hostname: warning: metadata says local-ipv4 {local} but the route to the metadata service leaves from {src}")
    return hostname.apply(ctx.target, ctx.settings, ctx.info)


def tls_job(ctx: BootContext) -> StepResult:
    """This instance's TLS key (once per instance) and certificate (again whenever its names change)."""
    return tls.ensure(ctx.target, ctx.settings, ctx.info, ctx.log)


def readdress_job(ctx: BootContext) -> StepResult:
    """Point the Ceph monitor at this instance's address (no-op when unchanged)."""
    return ceph_boot.readdress(ctx.target, ctx.settings, ctx.info.local_ipv4)


def rotate_mon_key_job(ctx: BootContext) -> StepResult:
    """A new key for the monitor, before it starts (the runner makes it once per instance)."""
    return ceph_keys.rotate_mon_key(ctx.target, ctx.settings)


def rotate_keys_job(ctx: BootContext) -> StepResult:
    """New cephx keys for the daemons and clients, before the manager and OSDs start (once per instance)."""
    return ceph_keys.rotate_keys(ctx.target, ctx.settings)


def openstack_secrets_job(ctx: BootContext) -> StepResult:
    """New OpenStack secrets for this instance (the runner makes it once per instance-id)."""
    return rotate_secrets(ctx.target, ctx.settings, ctx.info, ctx.log)


def openstack_broker_job(ctx: BootContext) -> StepResult:
    """The broker's cookie and user password for this instance, before it starts (once per instance-id).

    On an instance whose secrets were already made (an agent that gained this job later), the
    installed ones: a second set would leave the broker and its clients with different passwords.
    """
    return rotate_broker(ctx.target, ctx.settings, ctx.log, installed="openstack-secrets" in ctx.done_here)


def openstack_endpoints_job(ctx: BootContext) -> StepResult:
    """OpenStack configuration and catalog follow this boot's addresses (no-op when unchanged)."""
    return reconcile(ctx.target, ctx.settings, ctx.info, ctx.log)


def openstack_boot_volume_job(ctx: BootContext) -> StepResult:
    """This instance's bootable volume from the golden image (once per instance-id; never a second one)."""
    return ensure_boot_volume(ctx.target, ctx.settings, ctx.info, ctx.log)


def openstack_demo_server_job(ctx: BootContext) -> StepResult:
    """One demo server of this instance, booted from its bootable volume, running (every boot; never a second one)."""
    return ensure_demo_server(ctx.target, ctx.settings, ctx.info, ctx.log)


def jobs(settings: Settings) -> list[BootJob]:
    """The boot jobs in the order they run, with their unit ordering.

    OpenStack unit names of both profiles are listed: ordering against a unit that is not
    installed is ignored (Debian serves Keystone and cinder-api with uWSGI units of their
    own, Ubuntu from apache2).
    """
    c = settings.ceph
    ceph = ceph_units(c.mon_id, c.mgr_id, c.osd_count)
    mon, daemons = ceph[0], ceph[1:]
    not_before_endpoints = tuple(u for u in OPENSTACK_UNITS if u not in ("keystone.service", "apache2.service"))
    table = [
        BootJob("hostname", "boot", "Set the static hostname and /etc/hosts from the instance metadata", hostname_job,
                # After cloud-init's network stage, which on a new instance gives the metadata's name.
                after=("network-online.target", "cloud-init.service"), wants=("network-online.target",), before=("ssh.service", *ceph)),
        BootJob(tls.JOB_NAME, "boot", "Give this instance its own TLS key and a certificate for its current names", tls_job,
                after=("coa-hostname.service",),
                before=(*tls.SERVED_BY, "nova-novncproxy.service", "coa-openstack-secrets.service", "coa-openstack-endpoints.service"),
                secrets=True),
        BootJob("ceph-readdress", "boot", "Re-address the Ceph monitor when the instance's IP changed", readdress_job,
                after=("coa-hostname.service",), before=(*ceph, "ceph.target")),
        BootJob("ceph-mon-key", "instance", "Give the Ceph monitor its own key, before it starts (once per instance)",
                rotate_mon_key_job, after=("coa-ceph-readdress.service",), before=(mon,), secrets=True),
        BootJob("ceph-keys", "instance", "Give this instance its own cephx keys, before the manager and OSDs start (once per instance)",
                rotate_keys_job, after=(mon,), wants=(mon,), before=daemons, secrets=True),
        BootJob("openstack-broker", "instance", "Give RabbitMQ this instance's Erlang cookie and user password, before it starts",
                openstack_broker_job, before=("rabbitmq-server.service", "coa-openstack-secrets.service"), secrets=True),
        BootJob("openstack-secrets", "instance",
                "Give this instance its own OpenStack passwords, Fernet keys and libvirt secret (once per instance-id)",
                openstack_secrets_job,
                # Not after the broker: its files are made before it starts (coa-openstack-broker).
                after=("coa-ceph-keys.service", "mariadb.service", "libvirtd.service"),
                before=(*OPENSTACK_UNITS, *AGENT_UNITS, "coa-openstack-endpoints.service"), secrets=True),
        BootJob("openstack-endpoints", "boot", "Point the OpenStack configuration and catalog at this boot's address and public name",
                openstack_endpoints_job,
                after=("coa-hostname.service", "coa-openstack-secrets.service", "mariadb.service", "keystone.service", "apache2.service"),
                before=(*not_before_endpoints, *AGENT_UNITS, "coa-openstack-boot-volume.service")),
        BootJob("openstack-boot-volume", "instance", "Create this instance's bootable volume from the golden image, exactly once",
                openstack_boot_volume_job, after=("coa-openstack-endpoints.service", *OPENSTACK_UNITS, *ceph)),
        BootJob("openstack-demo-server", "boot",
                "Keep one demo server booted by this instance from its bootable volume (never a second one)",
                openstack_demo_server_job, after=("coa-openstack-boot-volume.service", *OPENSTACK_UNITS, *COMPUTE_UNITS)),
    ]
    return [fence_job(), *(_fenced(job) for job in table), unfence_job(table)]


def _fenced(job: BootJob) -> BootJob:
    """A job that makes secrets needs the fence up: without it, it does not run (closed, not open)."""
    if not job.secrets:
        return job
    return dataclasses.replace(job, after=(*job.after, FENCE_UNIT), requires=(*job.requires, FENCE_UNIT))


FENCE_UNIT = "coa-fence.service"
HOSTNAME_UNIT = "coa-hostname.service"


def fence_job() -> BootJob:
    """Before the network: close the instance to inbound connections except SSH (see :mod:`.fence`)."""
    return BootJob("fence", "boot", "Close the instance to the network (but SSH) until its secrets are its own", None,
                   after=("local-fs.target", "nftables.service"), before=("network-pre.target", "shutdown.target"),
                   wants=("network-pre.target",), command=(fence.NFT, "-f", fence.FENCE_RULES), early=True)


def unfence_job(table: list[BootJob]) -> BootJob:
    """Once every job that makes secrets has succeeded at this boot, open the instance (a failed one keeps it closed)."""
    units = (FENCE_UNIT, *(j.unit for j in table if j.secrets))
    return BootJob("unfence", "boot", "Open the instance to the network: its per-instance secrets are made", None,
                   after=units, requires=units, command=(fence.NFT, "-f", fence.UNFENCE_RULES))
