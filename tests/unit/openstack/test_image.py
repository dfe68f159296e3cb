"""Glance: glance-api.conf, picking the golden image."""

from __future__ import annotations

from typing import Any

import pytest

from provision.openstack.image import pick_image, render_glance_api_conf
from provision.openstack.ini import parse_ini

from .samples import ADDRS, SEC, S


def test_glance_conf_stores_images_in_rbd() -> None:
    conf = parse_ini(render_glance_api_conf(S, SEC, ADDRS))
    assert conf["DEFAULT"]["show_image_direct_url"] == "true"
    assert conf["DEFAULT"]["enabled_backends"] == "rbd:rbd"
    assert conf["DEFAULT"]["workers"] == str(S.openstack.glance_workers)
    assert conf["glance_store"]["default_backend"] == "rbd"
    assert conf["rbd"]["rbd_store_pool"] == "images" and conf["rbd"]["rbd_store_user"] == "images"
    assert conf["rbd"]["rbd_store_ceph_conf"] == "/etc/ceph/ceph.conf"
    assert conf["database"]["connection"].startswith("mysql+pymysql://glance:GlDb@localhost/glance?unix_socket=")
    auth = conf["keystone_authtoken"]
    assert auth["password"] == "GlSvc" and auth["username"] == "glance"
    assert auth["www_authenticate_uri"] == "https://ec2-203-0-113-7.compute-1.amazonaws.com:13000"  # issue 14: Keystone over TLS
    assert auth["auth_url"] == "http://10.77.0.5:5000"


@pytest.mark.parametrize(
    ("images", "keep", "drop"),
    [
        ([], None, []),
        ([{"id": "i1", "name": "g", "status": "active", "created_at": "1"}], "i1", []),
        ([{"id": "i1", "name": "g", "status": "queued", "created_at": "1"}], None, ["i1"]),
        ([{"id": "i2", "name": "g", "status": "active", "created_at": "2"}, {"id": "i1", "name": "g", "status": "active", "created_at": "1"}], "i1", ["i2"]),
        ([{"id": "i1", "name": "other", "status": "active", "created_at": "1"}], None, []),
    ],
)
def test_pick_image(images: list[dict[str, Any]], keep: str | None, drop: list[str]) -> None:
    assert pick_image(images, "g") == (keep, drop)
