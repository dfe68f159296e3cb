"""The boot jobs: what each one does (a thin adapter to the concern module) and how its unit is ordered.

Per-boot jobs run at every boot and do nothing when nothing changed; per-instance jobs run once
for each new instance-id (see :mod:`.runner`).
"""

from __future__ import annotations

from .. import hostname, tls
from ..ceph import boot as ceph_boot
from ..openstack.instance import reconcile, rotate_secrets
from ..openstack.server import ensure_demo_server
from ..openstack.volume import ensure_boot_volume
from ..paths import AGENT_UNITS, COMPUTE_UNITS, OPENSTACK_UNITS, ceph_units
from ..settings import Settings
from ..steps import StepResult
from .context import BootContext, BootJob


def route_source_ip(ctx: BootContext) -> str | None:
    """The source address the kernel uses towards the metadata service (our own IPv4)."""
    host = ctx.settings.metadata_url.split("://", 1)[-1].split("/", 1)[0].split(":")[0]
    out = ctx.target.run(["ip", "-4", "-o", "route", "get", host], check=False).stdout.split()
    return out[out.index("src") + 1] if "src" in out else None


def hostname_job(ctx: BootContext) -> StepResult:
    """Static hostname and /etc/hosts from the metadata (local IPv4 cross-checked with the route)."""
    local = ctx.info.local_ipv4
    src = route_source_ip(ctx)
    if src and src != local:
        ctx.log(f"hostname: warning: metadata says local-ipv4 {local} but the route to the metadata service leaves from {src}")
    return hostname.apply(ctx.target, ctx.settings, ctx.info)


def tls_job(ctx: BootContext) -> StepResult:
    """This instance's TLS key (once per instance) and certificate (again whenever its names change)."""
    return tls.ensure(ctx.target, ctx.settings, ctx.info, ctx.log)


def readdress_job(ctx: BootContext) -> StepResult:
    """Point the Ceph monitor at this instance's address (no-op when unchanged)."""
    return ceph_boot.readdress(ctx.target, ctx.settings, ctx.info.local_ipv4)


def rotate_keys_job(ctx: BootContext) -> StepResult:
    """New cephx keys for this instance (the runner makes it once per instance-id)."""
    return ceph_boot.rotate_keys(ctx.target, ctx.settings)


def openstack_secrets_job(ctx: BootContext) -> StepResult:
    """New OpenStack secrets for this instance (the runner makes it once per instance-id)."""
    return rotate_secrets(ctx.target, ctx.settings, ctx.info, ctx.log)


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
    not_before_endpoints = tuple(u for u in OPENSTACK_UNITS if u not in ("keystone.service", "apache2.service"))
    return [
        BootJob("hostname", "boot", "Set the static hostname and /etc/hosts from the instance metadata", hostname_job,
                after=("network-online.target",), wants=("network-online.target",), before=("ssh.service", *ceph)),
        BootJob(tls.JOB_NAME, "boot", "Give this instance its own TLS key and a certificate for its current names", tls_job,
                after=("coa-hostname.service",),
                before=(*tls.SERVED_BY, "nova-novncproxy.service", "coa-openstack-secrets.service", "coa-openstack-endpoints.service"),
                announces=True),
        BootJob("ceph-readdress", "boot", "Re-address the Ceph monitor when the instance's IP changed", readdress_job,
                after=("coa-hostname.service",), before=(*ceph, "ceph.target")),
        BootJob("ceph-keys", "instance", "Give this instance its own cephx keys (once per instance-id)", rotate_keys_job,
                after=ceph, wants=ceph),
        BootJob("openstack-secrets", "instance",
                "Give this instance its own OpenStack passwords, Fernet keys and libvirt secret (once per instance-id)",
                openstack_secrets_job,
                after=("coa-ceph-keys.service", "mariadb.service", "rabbitmq-server.service", "libvirtd.service"),
                before=(*OPENSTACK_UNITS, *AGENT_UNITS, "coa-openstack-endpoints.service")),
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
