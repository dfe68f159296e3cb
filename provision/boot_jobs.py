"""The boot jobs themselves: thin adapters from a BootContext to the concern modules."""

from __future__ import annotations

from .boot import BootContext
from .steps import StepResult


def route_source_ip(ctx: BootContext) -> str | None:
    """The source address the kernel uses towards the metadata service (our own IPv4)."""
    host = ctx.settings.metadata_url.split("://", 1)[-1].split("/", 1)[0].split(":")[0]
    out = ctx.target.run(["ip", "-4", "-o", "route", "get", host], check=False).stdout.split()
    return out[out.index("src") + 1] if "src" in out else None


def hostname_job(ctx: BootContext) -> StepResult:
    """Static hostname and /etc/hosts from the metadata (local IPv4 cross-checked with the route)."""
    from .hostname import apply

    local = getattr(ctx.info, "local_ipv4")
    src = route_source_ip(ctx)
    if src and src != local:
        ctx.log(f"hostname: warning: metadata says local-ipv4 {local} but the route to the metadata service leaves from {src}")
    return apply(ctx.target, ctx.settings, ctx.info)


def readdress_job(ctx: BootContext) -> StepResult:
    """Point the Ceph monitor at this instance's address (no-op when unchanged)."""
    from .ceph.boot import readdress

    return readdress(ctx.target, ctx.settings, getattr(ctx.info, "local_ipv4"))


def rotate_keys_job(ctx: BootContext) -> StepResult:
    """New cephx keys for this instance (the runner makes it once per instance-id)."""
    from .ceph.boot import rotate_keys

    return rotate_keys(ctx.target, ctx.settings)


def openstack_secrets_job(ctx: BootContext) -> StepResult:
    """New OpenStack secrets for this instance (the runner makes it once per instance-id)."""
    from .openstack.instance import rotate_secrets

    return rotate_secrets(ctx.target, ctx.settings, ctx.info, ctx.log)


def openstack_endpoints_job(ctx: BootContext) -> StepResult:
    """OpenStack configuration and catalog follow this boot's addresses (no-op when unchanged)."""
    from .openstack.instance import reconcile

    return reconcile(ctx.target, ctx.settings, ctx.info, ctx.log)


def openstack_boot_volume_job(ctx: BootContext) -> StepResult:
    """This instance's bootable volume from the golden image (once per instance-id; never a second one)."""
    from .openstack.volume import ensure_boot_volume

    return ensure_boot_volume(ctx.target, ctx.settings, ctx.info, ctx.log)


def openstack_demo_server_job(ctx: BootContext) -> StepResult:
    """One demo server of this instance, booted from its bootable volume, running (every boot; never a second one)."""
    from .openstack.server import ensure_demo_server

    return ensure_demo_server(ctx.target, ctx.settings, ctx.info, ctx.log)
