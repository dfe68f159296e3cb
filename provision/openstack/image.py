"""Glance: glance-api.conf (images in the RBD pool), its working directories, and the golden
guest image registered in Glance once (the disk itself is built by :mod:`provision.image.guest`).
"""

from __future__ import annotations

import os
import urllib.parse
from typing import Any, Mapping, Sequence

from ..image import guest
from ..settings import Settings
from ..systemd import wait_for
from ..target import Target
from .addresses import Addresses
from .api import Cloud, agent
from .infra import SchemaCommands
from .ini import PROXY_HEADERS_SECTION, FileSpec, authtoken_section, database_section, render_managed
from .profile import OpenStackProfile
from .secrets import Secrets

#: glance-api's staging and task directories (the filesystem stores of its import flow).
GLANCE_DIRS = ("/var/lib/glance/staging", "/var/lib/glance/tasks_work_dir")
#: The glance database's schema.
SCHEMAS: SchemaCommands = {"glance": [("glance", ["glance-manage", "db_sync"])]}


def render_glance_api_conf(settings: Settings, sec: Secrets, addrs: Addresses) -> str:
    """glance-api.conf: images in the RBD pool as client.images, direct URLs shown so Cinder can clone."""
    o = settings.openstack
    return render_managed(
        [
            (
                "DEFAULT",
                [
                    ("bind_host", "0.0.0.0"),
                    ("bind_port", o.glance_port),
                    ("workers", o.glance_workers),
                    ("show_image_direct_url", True),
                    ("enabled_backends", "rbd:rbd"),
                    # No public_endpoint: the version document names the URL each client used
                    # (the public one through the TLS proxy; see PROXY_HEADERS_SECTION).
                ],
            ),
            database_section("database", "glance", sec.glance_db, "glance"),
            ("glance_store", [("default_backend", "rbd")]),
            (
                "rbd",
                [
                    ("rbd_store_pool", settings.image_pool),
                    ("rbd_store_user", settings.image_pool),
                    ("rbd_store_ceph_conf", f"/etc/ceph/{settings.ceph.cluster}.conf"),
                    ("rbd_store_chunk_size", 8),
                    ("rados_connect_timeout", 10),
                    ("store_description", "Ceph RBD pool " + settings.image_pool),
                ],
            ),
            ("os_glance_staging_store", [("filesystem_store_datadir", "/var/lib/glance/staging")]),
            ("os_glance_tasks_store", [("filesystem_store_datadir", "/var/lib/glance/tasks_work_dir")]),
            authtoken_section(settings, addrs, "glance", sec.glance_service),
            ("paste_deploy", [("flavor", "keystone")]),
            ("oslo_messaging_notifications", [("driver", "noop")]),
            ("oslo_concurrency", [("lock_path", "/var/lock/glance")]),
            PROXY_HEADERS_SECTION,
        ],
    )


def glance_files(settings: Settings, prof: OpenStackProfile, sec: Secrets, addrs: Addresses) -> list[FileSpec]:
    """glance-api.conf (0640 root:glance)."""
    return [FileSpec("/etc/glance/glance-api.conf", render_glance_api_conf(settings, sec, addrs), 0o640, "root", "glance", (prof.glance_unit,))]


def ensure_glance_dirs(target: Target) -> list[str]:
    """Make glance-api's working directories (glance-owned, 0750); the ones made."""
    made = []
    for d in GLANCE_DIRS:
        if not target.exists(d):
            target.run(["install", "-d", "-o", "glance", "-g", "glance", "-m", "0750", d])
            made.append(d)
    return made


def pick_image(images: Sequence[Mapping[str, Any]], name: str) -> tuple[str | None, list[str]]:
    """(id of the oldest active image called ``name`` or None, ids of failed/partial ones to delete)."""
    mine = sorted((i for i in images if i.get("name") == name), key=lambda i: (str(i.get("created_at", "")), str(i.get("id"))))
    active = [i for i in mine if i.get("status") == "active"]
    keep = str(active[0]["id"]) if active else None
    drop = [str(i["id"]) for i in mine if i.get("status") in {"queued", "saving", "killed", "deleted", "uploading", "importing"} or (keep and i.get("status") == "active" and str(i["id"]) != keep)]
    return keep, drop


def list_images(cloud: Cloud, name: str) -> list[dict[str, Any]]:
    """Glance images called ``name`` (any status)."""
    q = urllib.parse.urlencode({"name": name, "limit": 100})
    return list(cloud.call("GET", f"{cloud.glance}/images?{q}").get("images", []))


def image_id(cloud: Cloud, name: str) -> str | None:
    """The id of the active image called ``name``, or None."""
    keep, _ = pick_image(list_images(cloud, name), name)
    return keep


def register_image(cloud: Cloud, name: str, path: str, description: str, timeout: float = 600) -> tuple[bool, str]:
    """Upload ``path`` as a public raw image ``name`` once; failed or partial uploads are deleted first."""
    keep, drop = pick_image(list_images(cloud, name), name)
    for i in drop:
        cloud.call("DELETE", f"{cloud.glance}/images/{i}", ok=(204, 404))
    if keep:
        return False, keep
    size = os.path.getsize(path)
    body = {"name": name, "disk_format": "raw", "container_format": "bare", "visibility": "public",
            "min_disk": 1, "description": description, "os_type": "linux"}
    image = cloud.call("POST", f"{cloud.glance}/images", body)
    with open(path, "rb") as f:
        cloud.call("PUT", f"{cloud.glance}/images/{image['id']}/file", data=f, length=size, ok=(204,), timeout=timeout)
    wait_for(f"image {image['id']} to become active",
             lambda: cloud.call("GET", f"{cloud.glance}/images/{image['id']}").get("status") == "active", 120, 1.0)
    return True, str(image["id"])


def guest_step(target: Target, settings: Settings) -> tuple[bool, str]:
    """Build the small bootable guest offline and register it in Glance (once)."""
    name = settings.openstack.guest_image_name
    found = agent(target, "image-status", "--name", name)
    if found.get("id"):
        return False, f"image {name} is {found['id']} (active)"
    path, detail = guest.build(target, settings)
    try:
        r = agent(target, "register-image", "--name", name, "--file", path, "--description", guest.DESCRIPTION)
    finally:
        guest.clean(target)
    return True, f"{detail}; registered as image {r.get('id')} in pool {settings.image_pool}"
