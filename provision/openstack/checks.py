"""Readiness checks of the OpenStack side, run on the instance (``python3 -m provision.openstack
check WHAT``) for :mod:`provision.ready`: quick probes, no retries.
"""

from __future__ import annotations

from ..settings import Settings
from ..target import Target
from .api import HttpError, Unreachable, session
from .compute import compute_ready
from .ini import ADMIN_USER
from .secrets import load_secrets
from .server import demo_server_state
from .volume import list_volumes

#: What :func:`check` can check.
CHECKS = ("keystone", "glance", "cinder", "boot-volume", "compute", "demo-server")


def check(settings: Settings, target: Target, what: str) -> tuple[bool, str]:
    """One readiness check of :data:`CHECKS`: ``keystone`` (a token), ``glance``, ``cinder`` (they answer), ``boot-volume`` ..."""
    sec = load_secrets(target, settings)
    if sec is None:
        return False, "no secrets on this host (not provisioned)"
    try:
        cloud = session(settings, sec, retry_s=0)
        if what == "keystone":
            return True, f"token for {ADMIN_USER} (project {cloud.project_id[:8]}...)"
        if what == "glance":
            n = len(cloud.call("GET", f"{cloud.glance}/images?limit=100").get("images", []))
            return True, f"answers ({n} images)"
        if what == "cinder":
            n = len(cloud.call("GET", f"{cloud.cinder}/volumes?limit=1000").get("volumes", []))
            return True, f"answers ({n} volumes)"
        if what == "boot-volume":
            vols = list_volumes(cloud, settings.boot_volume_name)
            good = [v for v in vols if v.get("status") in ("available", "in-use")]
            ok = len(vols) == 1 and len(good) == 1
            states = ", ".join(f"{v['id'][:8]} {v.get('status')}" for v in vols) or "none"
            return ok, f"{settings.boot_volume_name}: {states}"
        if what == "compute":
            why = compute_ready(cloud)
            return why is None, why or "nova-compute up, hypervisor mapped, Neutron agents alive"
        if what == "demo-server":
            return demo_server_state(cloud, settings, target)
    except (Unreachable, HttpError) as e:
        return False, str(e).splitlines()[0][:200]
    return False, f"unknown check {what!r}"
