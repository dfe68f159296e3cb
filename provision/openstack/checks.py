"""Readiness checks of the OpenStack side, run on the instance (``python3 -m provision.openstack
check [WHAT]``) for :mod:`provision.ready`: quick probes, no retries, one Keystone token for all.
"""

from __future__ import annotations

from ..settings import Settings
from ..target import Target
from .api import Cloud, HttpError, Unreachable, session
from .compute import compute_ready
from .hung import diagnose_unreachable
from .ini import ADMIN_USER
from .profile import OpenStackProfile, host_profile
from .secrets import load_secrets
from .server import demo_server_state
from .volume import list_volumes

#: What :func:`check` can check, in the order :func:`check_all` reports them.
CHECKS = ("keystone", "glance", "cinder", "boot-volume", "compute", "demo-server")


def _probe(cloud: Cloud, settings: Settings, target: Target, what: str) -> tuple[bool, str]:
    """One check of :data:`CHECKS` after ``keystone``, through an authenticated session."""
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
    return False, f"unknown check {what!r}"


def check_all(settings: Settings, target: Target, only: tuple[str, ...] = CHECKS) -> list[tuple[str, bool, str]]:
    """``(name, ok, detail)`` of each check in ``only`` (every check by default), in :data:`CHECKS` order."""
    wanted = [w for w in CHECKS if w in only] + [w for w in only if w not in CHECKS]
    sec = load_secrets(target, settings)
    if sec is None:
        return [(w, False, "no secrets on this host (not provisioned)") for w in wanted]
    prof = host_profile(target, settings)
    try:
        cloud = session(settings, sec, retry_s=0)
    except (Unreachable, HttpError) as e:
        why = _why(target, prof, settings, e)
        return [(w, False, why if w == "keystone" else f"no Keystone token: {why}") for w in wanted]
    out: list[tuple[str, bool, str]] = []
    for what in wanted:
        if what == "keystone":
            out.append((what, True, f"token for {ADMIN_USER} (project {cloud.project_id[:8]}...)"))
            continue
        try:
            ok, detail = _probe(cloud, settings, target, what)
        except (Unreachable, HttpError) as e:
            ok, detail = False, _why(target, prof, settings, e)
        out.append((what, ok, detail))
    return out


def _why(target: Target, prof: OpenStackProfile, settings: Settings, e: Exception) -> str:
    """Why a check failed: the error, and for an API that did not answer, whether its unit runs and hangs."""
    first = str(e).splitlines()[0]
    if isinstance(e, Unreachable):
        return diagnose_unreachable(target, prof, settings, first)[:300]
    return first[:200]


def check(settings: Settings, target: Target, what: str) -> tuple[bool, str]:
    """One readiness check of :data:`CHECKS`."""
    _, ok, detail = check_all(settings, target, (what,))[0]
    return ok, detail
