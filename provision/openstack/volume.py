"""Cinder: cinder.conf (the one RBD backend, wired to the volumes pool and the libvirt secret),
waiting for the volume backend, and the instance's bootable volume (planned as a table by
:func:`plan_boot_volume`, made once per instance by :func:`ensure_boot_volume`).
"""

from __future__ import annotations

import functools
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from ..exceptions import ProvisionError
from ..settings import Settings
from ..steps import Log, StepResult
from ..systemd import wait_for
from ..target import Target
from .addresses import Addresses
from .api import Cloud, HttpError, OpenStackError, Unreachable, say, session
from .hung import diagnose
from .identity import wait_keystone
from .image import image_id
from .infra import SchemaCommands
from .ini import PROXY_HEADERS_SECTION, FileSpec, authtoken_section, database_section, rabbit_url, render_managed
from .profile import OpenStackProfile, host_profile
from .secrets import Secrets, require_secrets

#: The cinder database's schema.
SCHEMAS: SchemaCommands = {"cinder": [("cinder", ["cinder-manage", "db", "sync"])]}


def render_cinder_conf(settings: Settings, sec: Secrets, addrs: Addresses) -> str:
    """cinder.conf: one RBD backend (pool volumes as client.volumes, the libvirt secret's uuid)."""
    o = settings.openstack
    backend = o.cinder_backend
    return render_managed(
        [
            (
                "DEFAULT",
                [
                    # A fixed service host: volumes stay manageable on a relaunched instance.
                    ("host", settings.hostname),
                    ("my_ip", addrs.private_ip),
                    ("auth_strategy", "keystone"),
                    ("transport_url", rabbit_url(sec.rabbit)),
                    ("enabled_backends", backend),
                    ("default_volume_type", "__DEFAULT__"),
                    ("glance_api_servers", f"http://{addrs.private_ip}:{o.glance_port}"),
                    ("state_path", "/var/lib/cinder"),
                    ("log_dir", "/var/log/cinder"),
                    # Report capabilities at once after a start, then often: otherwise "No valid
                    # backend" for 60-75 s (measured; openstack-notes.md).
                    ("periodic_fuzzy_delay", 0),
                    ("periodic_interval", 15),
                    ("report_interval", 10),
                ],
            ),
            database_section("database", "cinder", sec.cinder_db, "cinder"),
            authtoken_section(settings, addrs, "cinder", sec.cinder_service),
            ("oslo_concurrency", [("lock_path", "/var/lock/cinder")]),
            ("oslo_messaging_notifications", [("driver", "noop")]),
            PROXY_HEADERS_SECTION,
            (
                backend,
                [
                    ("volume_driver", "cinder.volume.drivers.rbd.RBDDriver"),
                    ("volume_backend_name", backend),
                    ("rbd_pool", settings.volume_pool),
                    ("rbd_user", settings.volume_pool),
                    ("rbd_ceph_conf", f"/etc/ceph/{settings.ceph.cluster}.conf"),
                    ("rbd_secret_uuid", sec.libvirt_secret_uuid),
                    ("rbd_flatten_volume_from_snapshot", False),
                    ("rbd_max_clone_depth", 5),
                    ("rbd_store_chunk_size", 4),
                    ("rados_connect_timeout", 10),
                    ("report_discard_supported", True),
                ],
            ),
        ],
    )


def cinder_files(settings: Settings, prof: OpenStackProfile, sec: Secrets, addrs: Addresses) -> list[FileSpec]:
    """cinder.conf (0640 root:cinder)."""
    return [FileSpec("/etc/cinder/cinder.conf", render_cinder_conf(settings, sec, addrs), 0o640, "root", "cinder", prof.cinder_units)]


#: Volume states that mean "this volume exists and is usable".
GOOD_STATES = frozenset({"available", "in-use", "reserved", "attaching", "detaching", "backing-up", "restoring-backup", "maintenance"})
#: States that end by themselves (or by cinder-volume's restart, which errors a stuck "creating").
BUSY_STATES = frozenset({"creating", "downloading", "uploading", "deleting", "extending", "retyping"})
#: States to delete.
BAD_STATES = frozenset({"error", "error_restoring", "error_extending", "error_managing"})


@dataclass(frozen=True)
class VolumePlan:
    """What to do about the instance's bootable volume.

    ``keep``: the id of the volume that is it (nothing else to do when no ``delete``);
    ``delete``: ids of failed or surplus copies; ``wait``: ids still being worked on;
    ``create``: True when none exists and none is on its way.
    """

    keep: str | None
    delete: tuple[str, ...]
    wait: tuple[str, ...]
    create: bool
    reason: str


def plan_boot_volume(volumes: Sequence[Mapping[str, Any]], name: str) -> VolumePlan:
    """Decide from Cinder's volume list (``id``, ``name``, ``status``, ``created_at``, ``attachments``).

    Exactly one volume called ``name`` must remain: the oldest usable one. Failed copies
    are deleted; surplus usable copies too unless attached (never touch an attached one).
    While a copy is still being created, nothing new is made.
    """
    mine = sorted((v for v in volumes if v.get("name") == name), key=lambda v: (str(v.get("created_at", "")), str(v.get("id"))))
    good = [v for v in mine if v.get("status") in GOOD_STATES]
    busy = [v for v in mine if v.get("status") in BUSY_STATES]
    bad = [v for v in mine if v.get("status") not in GOOD_STATES | BUSY_STATES]
    delete = [str(v["id"]) for v in bad if v.get("status") != "error_deleting"]
    if good:
        keep = good[0]
        surplus = [str(v["id"]) for v in good[1:] if not v.get("attachments")]
        delete += surplus
        # A busy copy next to a good one is surplus too, but can only be deleted once it settles.
        wait = tuple(str(v["id"]) for v in busy if v.get("status") != "deleting")
        reason = f"volume {keep['id']} is {keep.get('status')}"
        if delete or wait:
            reason += f"; {len(delete)} surplus/failed to delete, {len(wait)} busy to settle"
        return VolumePlan(str(keep["id"]), tuple(delete), wait, False, reason)
    if busy:
        return VolumePlan(None, tuple(delete), tuple(str(v["id"]) for v in busy), False, f"{len(busy)} copy being worked on ({busy[0].get('status')})")
    if delete:
        return VolumePlan(None, tuple(delete), (), False, f"{len(delete)} failed copy to delete first")
    stuck = [v for v in mine if v.get("status") == "error_deleting"]
    reason = "none exists" + (f" ({len(stuck)} stuck in error_deleting, ignored)" if stuck else "")
    return VolumePlan(None, (), (), True, reason)


def list_volumes(cloud: Cloud, name: str) -> list[dict[str, Any]]:
    """The admin project's volumes called ``name`` (detail view)."""
    q = urllib.parse.urlencode({"name": name, "limit": 1000})
    vols = cloud.call("GET", f"{cloud.cinder}/volumes/detail?{q}").get("volumes", [])
    return [v for v in vols if v.get("name") == name]


def volume_backend_ready(cloud: Cloud) -> bool:
    """True when a cinder-volume service is up and the scheduler knows its pool."""
    try:
        services = cloud.call("GET", f"{cloud.cinder}/os-services?binary=cinder-volume").get("services", [])
        if not any(s.get("state") == "up" and s.get("status") == "enabled" for s in services):
            return False
        return bool(cloud.call("GET", f"{cloud.cinder}/scheduler-stats/get_pools").get("pools"))
    except (Unreachable, HttpError):
        return False


def wait_apis(target: Target, settings: Settings, sec: Secrets, timeout: float | None = None) -> dict[str, float]:
    """Wait until Keystone issues a token, Glance and Cinder answer and the volume backend is ready.

    Raises:
        ProvisionError: one did not within the bound; the message names the unit and says whether it hangs.
    """
    start = time.monotonic()
    budget = timeout or settings.openstack.start_timeout_s
    marks: dict[str, float] = {}
    prof = host_profile(target, settings)
    try:
        wait_keystone(settings, budget)
    except ProvisionError as e:
        raise ProvisionError(f"{e.message}: {diagnose(target, prof, settings, 'keystone')}") from e
    cloud = session(settings, sec, wait=budget - (time.monotonic() - start), retry_s=0)
    marks["keystone"] = time.monotonic() - start
    left = lambda: max(5.0, budget - (time.monotonic() - start))  # noqa: E731
    for api, url in (("glance", f"{cloud.glance}/images?limit=1"), ("cinder", f"{cloud.cinder}/volumes?limit=1")):
        try:
            wait_for(f"{api.capitalize()} to answer", functools.partial(_ok, functools.partial(cloud.call, "GET", url)), left(), 0.5)
        except ProvisionError as e:
            raise ProvisionError(f"{e.message}: {diagnose(target, prof, settings, api)}") from e
        marks[api] = time.monotonic() - start
    wait_for("the Cinder volume backend", lambda: volume_backend_ready(cloud), left(), 1.0)
    marks["volume-backend"] = time.monotonic() - start
    return marks


def _ok(fn: Callable[[], Any]) -> bool:
    """True when ``fn`` (an API call) gets an expected answer."""
    try:
        fn()
        return True
    except (Unreachable, HttpError):
        return False


def ensure_boot_volume(target: Target, settings: Settings, info: Any, log: Log = say) -> StepResult:
    """Make the instance's bootable volume from the golden image, exactly once, ever.

    Unit ordering: once per new instance-id, ``After=`` Glance, Cinder and
    ``coa-openstack-endpoints.service``.

    Identity is the name: a relaunched instance finds its image's volume (same Ceph, same
    Cinder database) and keeps it. A run that died mid-creation left a volume in
    ``creating`` (cinder-volume sets it to ``error`` when it restarts) or ``error``: failed
    copies are deleted before a new one is made, and nothing new is made while one is
    still being worked on. Surplus copies are deleted (never an attached one).
    """
    start = time.monotonic()
    o = settings.openstack
    name = settings.boot_volume_name
    sec = require_secrets(target, settings)
    marks = wait_apis(target, settings, sec)
    log("APIs answer after " + ", ".join(f"{k} {v:.1f}s" for k, v in marks.items()))
    cloud = session(settings, sec)
    deadline = time.monotonic() + o.start_timeout_s
    did: list[str] = []
    created = 0
    busy_since: dict[str, float] = {}
    while True:
        plan = plan_boot_volume(list_volumes(cloud, name), name)
        for vid in plan.delete:
            log(f"deleting volume {vid} ({name}: {plan.reason})")
            cloud.call("DELETE", f"{cloud.cinder}/volumes/{vid}", ok=(202, 404))
            did.append(f"deleted {vid}")
        if plan.keep and not plan.wait and not plan.delete:
            detail = f"{name} is volume {plan.keep}" + (f" ({'; '.join(did)})" if did else "")
            if created:
                return StepResult("openstack.boot-volume", True, f"created {detail}", time.monotonic() - start)
            log(f"unchanged: {detail}")
            return StepResult("openstack.boot-volume", bool(did), f"kept {detail}", time.monotonic() - start)
        if time.monotonic() > deadline:
            raise OpenStackError(f"{name} did not settle within {o.start_timeout_s}s: {plan.reason}")
        for vid in plan.wait:
            since = busy_since.setdefault(vid, time.monotonic())
            if time.monotonic() - since > o.start_timeout_s / 2:
                # Stuck (its creator died and cinder-volume never restarted): mark it failed, so the next plan deletes it.
                log(f"volume {vid} stuck for {time.monotonic() - since:.0f}s: resetting it to error")
                cloud.call("POST", f"{cloud.cinder}/volumes/{vid}/action", {"os-reset_status": {"status": "error"}}, ok=(202, 404))
        if plan.create:
            if created >= 3:
                raise OpenStackError(f"{name}: three creations failed", hint="see `journalctl -u cinder-volume`")
            image = image_id(cloud, o.guest_image_name)
            if image is None:
                raise OpenStackError(f"The golden image {o.guest_image_name!r} is not in Glance", hint="re-run provisioning")
            body = {"volume": {"name": name, "size": o.boot_volume_size_gib, "imageRef": image,
                               "description": "Bootable volume of this instance, cloned from the golden guest image"}}
            vol = cloud.call("POST", f"{cloud.cinder}/volumes", body)["volume"]
            created += 1
            log(f"creating volume {vol['id']} ({name}) from image {image}")
        time.sleep(1.0 if (plan.wait or plan.create) else 0.2)
