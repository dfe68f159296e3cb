"""The on-instance command line: ``python3 -m provision.openstack COMMAND`` prints one JSON line.

Provisioning runs it on the host through the Target (:func:`provision.openstack.api.agent`):
the APIs listen on the instance, which the builder may not reach directly. Readiness runs
its ``check`` command. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..exceptions import ProvisionError
from ..settings import Settings, load_installed
from ..target import Target
from ..target.local import LocalTarget
from .addresses import Addresses
from .api import session
from .checks import CHECKS, check, check_all
from .compute import wait_compute
from .identity import admin_cloud, ensure_keystone_resources
from .image import image_id, register_image
from .network import ensure_network
from .secrets import require_secrets
from .server import ensure_flavor, forget_demo_server
from .volume import wait_apis


def parser() -> argparse.ArgumentParser:
    """The command line's parser: one subcommand per thing provisioning or readiness asks for."""
    p = argparse.ArgumentParser(prog="python3 -m provision.openstack")
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("admin-check", help="the admin password of this host's secrets works (--reset: bootstrap it)")
    a.add_argument("--reset", action="store_true")
    k = sub.add_parser("keystone-resources", help="service project, users, roles, services, endpoints")
    k.add_argument("--private-ip", required=True)
    k.add_argument("--public-host", required=True)
    sub.add_parser("wait-apis", help="wait until Keystone, Glance, Cinder and the volume backend are ready")
    s = sub.add_parser("image-status", help="the id of the active image called NAME")
    s.add_argument("--name", required=True)
    r = sub.add_parser("register-image", help="upload FILE as public raw image NAME (once)")
    r.add_argument("--name", required=True)
    r.add_argument("--file", required=True)
    r.add_argument("--description", default="")
    c = sub.add_parser("check", help="readiness checks: WHAT, or all of them (a list of results)")
    c.add_argument("what", nargs="?", choices=list(CHECKS))
    w = sub.add_parser("wait-compute", help="wait until nova-compute is up and mapped and Neutron's agents are alive")
    w.add_argument("--timeout", type=float, default=300)
    sub.add_parser("network", help="the guests' network, subnet and the demo flavor (once)")
    sub.add_parser("forget-demo-server", help="delete the demo server(s) and key pair (before imaging)")
    return p


def run(args: argparse.Namespace, settings: Settings, target: Target) -> dict[str, Any]:
    """Do what ``args`` asks; the JSON-able outcome (ProvisionError when it could not)."""
    if args.cmd == "check" and args.what:
        ok, detail = check(settings, target, args.what)
        return {"ok": ok, "detail": detail}
    if args.cmd == "check":
        return {"checks": [{"name": n, "ok": ok, "detail": d} for n, ok, d in check_all(settings, target)]}
    sec = require_secrets(target, settings)
    if args.cmd == "admin-check":
        _, did = admin_cloud(target, settings, sec, lambda m: None, reset=args.reset)
        return {"changed": bool(did), "detail": "; ".join(did) or "admin authenticates"}
    if args.cmd == "keystone-resources":
        cloud, did = admin_cloud(target, settings, sec, lambda m: None)
        did += ensure_keystone_resources(cloud, settings, sec, Addresses(args.private_ip, args.public_host))
        return {"changed": bool(did), "detail": "; ".join(did) or "project, users, roles, services and endpoints current"}
    if args.cmd == "wait-apis":
        return {"changed": False, "marks": wait_apis(target, settings, sec)}
    cloud = session(settings, sec, wait=60)
    if args.cmd == "wait-compute":
        return {"changed": False, "waited": wait_compute(cloud, args.timeout)}
    if args.cmd == "network":
        did = ensure_network(cloud, settings) + ensure_flavor(cloud, settings)
        return {"changed": bool(did), "detail": "; ".join(did) or "network, subnet and flavor exist"}
    if args.cmd == "forget-demo-server":
        did = forget_demo_server(target, cloud, settings)
        return {"changed": bool(did), "detail": "; ".join(did) or "no demo server, no key pair"}
    if args.cmd == "image-status":
        return {"id": image_id(cloud, args.name)}
    changed, iid = register_image(cloud, args.name, args.file, args.description)
    return {"changed": changed, "id": iid}


def main(argv: list[str] | None = None) -> int:
    """``python3 -m provision.openstack COMMAND``: print one JSON line with the outcome (exit 1 on an error)."""
    args = parser().parse_args(argv)
    settings = load_installed()
    target = LocalTarget()
    try:
        out = run(args, settings, target)
    except ProvisionError as e:
        print(json.dumps({"error": str(e).splitlines()[0]}), flush=True)
        return 1
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
