"""The demo server: one small guest per instance, booted from the instance's bootable volume
on the guests' network with the demo flavor; planned as a table (:func:`plan_demo_server`),
kept running at every boot (:func:`ensure_demo_server`), checked by :func:`demo_server_state`.

It uses every service: Nova boots it, Neutron gives it its port, Cinder its root disk. It is
booted with a config drive and the instance's key pair (:mod:`provision.openstack.keypair`),
so its owner logs in over SSH through the instance; :data:`~provision.paths.DEMO_SERVER_NAME`
records its address. Before imaging, :func:`forget_demo_server` removes the builder's server
and key pair: a new instance boots its own.
"""

from __future__ import annotations

import json
import posixpath
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..paths import DEMO_SERVER_NAME, LAST_METADATA_NAME
from ..settings import Settings
from ..steps import Log, StepResult
from ..target import Target
from .api import Cloud, OpenStackError, required, say, session
from .compute import wait_compute
from .keypair import delete_keypair, ensure_keypair
from .network import network_id
from .secrets import require_secrets
from .volume import list_volumes

#: Server metadata key naming the EC2 instance a demo server was booted by.
INSTANCE_KEY = "coa-instance-id"
#: Server states that end by themselves.
SERVER_BUSY = frozenset({"BUILD", "REBOOT", "HARD_REBOOT", "MIGRATING", "RESIZE", "VERIFY_RESIZE", "REBUILD", "PAUSED", "SUSPENDED"})


@dataclass(frozen=True)
class ServerPlan:
    """What to do about the demo server.

    ``keep``: the id of this instance's server; ``delete``: ids to delete (another
    instance's, failed or surplus ones); ``start``: the kept server is stopped; ``wait``: it
    is still changing state; ``create``: none of this instance's exists and none is left
    to delete (its volume is free).
    """

    keep: str | None
    delete: tuple[str, ...]
    start: bool
    wait: bool
    create: bool
    reason: str


def plan_demo_server(servers: Sequence[Mapping[str, Any]], name: str, instance_id: str) -> ServerPlan:
    """Decide from Nova's server list (``id``, ``name``, ``status``, ``created``, ``metadata``).

    One server called ``name`` must run, booted by this instance (``metadata[INSTANCE_KEY]``).
    A server booted by another instance (the builder, or this disk's previous instance) is
    deleted: its volume connection names that instance's monitor address and libvirt secret.
    Our own server in ERROR is deleted and made again; a stopped one is started.
    """
    mine = sorted((s for s in servers if s.get("name") == name and s.get("status") not in ("DELETED", "SOFT_DELETED")),
                  key=lambda s: (str(s.get("created", "")), str(s.get("id"))))
    ours = [s for s in mine if (s.get("metadata") or {}).get(INSTANCE_KEY) == instance_id]
    others = [str(s["id"]) for s in mine if s not in ours]
    failed = [str(s["id"]) for s in ours if s.get("status") == "ERROR"]
    alive = [s for s in ours if s.get("status") != "ERROR"]
    delete = others + failed + [str(s["id"]) for s in alive[1:]]
    if alive:
        keep = alive[0]
        status = str(keep.get("status"))
        reason = f"server {keep['id']} is {status}"
        if delete:
            reason += f"; {len(delete)} other to delete"
        return ServerPlan(str(keep["id"]), tuple(delete), status == "SHUTOFF", status in SERVER_BUSY, False, reason)
    if delete:
        why = f"{len(others)} of another instance" if others else f"{len(failed)} failed"
        return ServerPlan(None, tuple(delete), False, False, False, f"{why} to delete first")
    return ServerPlan(None, (), False, False, True, "none exists")


#: Nova API microversion for the demo server's requests (2.37: ``networks`` is required, "none"/"auto" allowed).
NOVA_MICROVERSION = {"X-OpenStack-Nova-API-Version": "2.37"}


def _flavor(cloud: Cloud, name: str) -> str | None:
    """The id of the flavor called ``name`` (public or not), or None."""
    for f in cloud.call("GET", f"{cloud.nova}/flavors/detail?is_public=None").get("flavors", []):
        if f.get("name") == name:
            return str(f["id"])
    return None


def ensure_flavor(cloud: Cloud, settings: Settings) -> list[str]:
    """The demo flavor (no disk: the server boots from a volume); what was made."""
    o = settings.openstack
    if _flavor(cloud, o.flavor_name) is not None:
        return []
    body = {"flavor": {"name": o.flavor_name, "ram": o.flavor_ram_mib, "vcpus": o.flavor_vcpus, "disk": 0, "os-flavor-access:is_public": True}}
    cloud.call("POST", f"{cloud.nova}/flavors", body)
    return [f"created flavor {o.flavor_name} ({o.flavor_ram_mib} MiB, {o.flavor_vcpus} vCPU, boots from a volume)"]


def flavor_id(cloud: Cloud, settings: Settings) -> str:
    """The id of the demo flavor."""
    name = settings.openstack.flavor_name
    return required(_flavor(cloud, name), f"Flavor {name!r}")


def list_servers(cloud: Cloud, name: str) -> list[dict[str, Any]]:
    """The admin project's servers called exactly ``name`` (detail view)."""
    q = urllib.parse.urlencode({"name": f"^{name}$"})
    return [s for s in cloud.call("GET", f"{cloud.nova}/servers/detail?{q}").get("servers", []) if s.get("name") == name]


def release_orphaned(cloud: Cloud, volume: dict[str, Any], log: Log) -> bool:
    """Detach ``volume`` from servers that no longer exist (a build that failed half-way can leave that); True if it did.

    Only an admin status reset clears such an attachment: Cinder refuses to delete the
    attachment of a server it believes Nova still uses unless Nova itself asks.
    """
    servers = [a.get("server_id") for a in volume.get("attachments", []) if a.get("server_id")]
    if volume.get("status") != "in-use" or not servers:
        return False
    if any(cloud.status("GET", f"{cloud.nova}/servers/{sid}") != 404 for sid in servers):
        return False
    log(f"volume {volume['id']} is attached to deleted server(s) {', '.join(servers)}: resetting it to available")
    body = {"os-reset_status": {"status": "available", "attach_status": "detached"}}
    cloud.call("POST", f"{cloud.cinder}/volumes/{volume['id']}/action", body, ok=(202,))
    return True


def ensure_demo_server(target: Target, settings: Settings, info: Any, log: Log = say) -> StepResult:
    """One demo server, booted by this instance from its bootable volume, running; never a second one.

    Unit ordering: every boot, ``After=`` the boot volume job and the Nova and Neutron units.
    On a reboot, Nova resumes the server itself (``resume_guests_state_on_host_boot``) and
    this finds it; on a new instance the previous instance's server is deleted first (its
    volume connection names the old monitor address and libvirt secret) and the volume,
    detached by that, boots a new one.
    """
    start = time.monotonic()
    o = settings.openstack
    instance_id = str(info.instance_id)
    sec = require_secrets(target, settings)
    cloud = session(settings, sec, wait=o.start_timeout_s)
    waited = wait_compute(cloud, o.start_timeout_s)
    log(f"compute and network agents ready after {waited:.1f}s")
    deadline = time.monotonic() + o.start_timeout_s
    did: list[str] = []
    created = 0
    while True:
        plan = plan_demo_server(list_servers(cloud, o.server_name), o.server_name, instance_id)
        for sid in plan.delete:
            if f"deleted {sid}" not in did:
                log(f"deleting server {sid} ({plan.reason})")
                did.append(f"deleted {sid}")
            cloud.call("DELETE", f"{cloud.nova}/servers/{sid}", ok=(204, 404, 409))
        if plan.keep and plan.start:
            log(f"starting server {plan.keep} (it was stopped)")
            cloud.call("POST", f"{cloud.nova}/servers/{plan.keep}/action", {"os-start": None}, ok=(202, 409))
            did.append(f"started {plan.keep}")
        if plan.keep and not plan.delete and not plan.start and not plan.wait:
            server = cloud.call("GET", f"{cloud.nova}/servers/{plan.keep}")["server"]
            if server.get("status") == "ACTIVE":
                detail = f"{o.server_name} is server {plan.keep}, ACTIVE"
                if record_demo_server(target, settings, server):
                    log(f"{o.server_name}: guest address {server_address(server)}, key pair {server.get('key_name') or 'none'}")
                if created or did:
                    return StepResult("openstack.demo-server", True, f"{detail} ({'; '.join(did)})", time.monotonic() - start)
                log(f"unchanged: {detail}")
                return StepResult("openstack.demo-server", False, detail, time.monotonic() - start)
        if time.monotonic() > deadline:
            raise OpenStackError(f"{o.server_name} did not become ACTIVE within {o.start_timeout_s}s: {plan.reason}",
                                 hint="see `journalctl -u nova-compute` and `openstack server show`")
        if plan.create:
            if created >= 3:
                raise OpenStackError(f"{o.server_name}: three boots failed", hint="see `journalctl -u nova-compute`")
            all_vols = list_volumes(cloud, settings.boot_volume_name)
            for v in all_vols:
                if release_orphaned(cloud, v, log):
                    did.append(f"released volume {v['id']} from a deleted server")
            vols = [v for v in all_vols if v.get("status") == "available"]
            if vols:
                key_name, kdid = ensure_keypair(cloud, o.keypair_name, getattr(info, "openssh_key", None))
                did += kdid
                body = {"server": {
                    "name": o.server_name,
                    "flavorRef": flavor_id(cloud, settings),
                    "networks": [{"uuid": network_id(cloud, settings)}],
                    "block_device_mapping_v2": [{"boot_index": 0, "uuid": vols[0]["id"], "source_type": "volume",
                                                 "destination_type": "volume", "delete_on_termination": False}],
                    "metadata": {INSTANCE_KEY: instance_id},
                    # The guest reads its key from the config drive (no metadata service runs).
                    "config_drive": True,
                    **({"key_name": key_name} if key_name else {}),
                }}
                server = cloud.call("POST", f"{cloud.nova}/servers", body, headers=NOVA_MICROVERSION)["server"]
                created += 1
                log(f"booting server {server['id']} ({o.server_name}) from volume {vols[0]['id']}")
                did.append(f"booted {server['id']} from volume {vols[0]['id']}")
        time.sleep(1.0)


def server_address(server: Mapping[str, Any]) -> str | None:
    """The first IPv4 address of a server (Nova's ``addresses``), or None."""
    for entries in (server.get("addresses") or {}).values():
        for a in entries:
            if a.get("version") == 4 and a.get("addr"):
                return str(a["addr"])
    return None


def render_demo_server_record(server: Mapping[str, Any]) -> str:
    """The JSON of :data:`~provision.paths.DEMO_SERVER_NAME`: id, guest address, key pair (nothing secret)."""
    return json.dumps({"id": server.get("id"), "address": server_address(server), "key_name": server.get("key_name")}, sort_keys=True) + "\n"


def record_demo_server(target: Target, settings: Settings, server: Mapping[str, Any]) -> bool:
    """Write :data:`~provision.paths.DEMO_SERVER_NAME` for ``server`` (0644); True when it changed."""
    path = posixpath.join(settings.state_dir, DEMO_SERVER_NAME)
    text = render_demo_server_record(server)
    if target.exists(path) and target.read(path).decode() == text:
        return False
    target.put(path, text, 0o644)
    return True


def forget_demo_server(target: Target, cloud: Cloud, settings: Settings, timeout: float = 300) -> list[str]:
    """Delete every demo server and the key pair, and the record; wait until Nova has let go of them.

    Before imaging: the builder's server (its config drive holds the builder's public key) and
    key pair must not be in a public image; the first boot of every instance boots its own.
    """
    o = settings.openstack
    did = []
    for s in list_servers(cloud, o.server_name):
        cloud.call("DELETE", f"{cloud.nova}/servers/{s['id']}", ok=(204, 404, 409))
        did.append(f"deleted server {s['id']}")
    deadline = time.monotonic() + timeout
    while (left := list_servers(cloud, o.server_name)) and time.monotonic() < deadline:
        time.sleep(1.0)
    if left:
        raise OpenStackError(f"{o.server_name}: {len(left)} server(s) still there {timeout:.0f}s after their deletion",
                             hint="see `journalctl -u nova-compute`")
    if delete_keypair(cloud, o.keypair_name):
        did.append(f"deleted key pair {o.keypair_name}")
    record = posixpath.join(settings.state_dir, DEMO_SERVER_NAME)
    if target.exists(record):
        target.run(["rm", "-f", record])
        did.append(f"removed {record}")
    return did


def demo_server_state(cloud: Cloud, settings: Settings, target: Target) -> tuple[bool, str]:
    """Exactly one demo server, ACTIVE, booted by this instance, its root disk the bootable volume."""
    o = settings.openstack
    servers = list_servers(cloud, o.server_name)
    try:
        instance_id = json.loads(target.read(posixpath.join(settings.state_dir, LAST_METADATA_NAME)).decode()).get("instance_id")
    except (FileNotFoundError, ValueError):
        instance_id = None
    states = ", ".join(f"{s['id'][:8]} {s.get('status')}" for s in servers) or "none"
    if len(servers) != 1:
        return False, f"{o.server_name}: {states}"
    server = servers[0]
    if (server.get("metadata") or {}).get(INSTANCE_KEY) != instance_id:
        return False, f"{o.server_name}: {states}, booted by another instance"
    vols = {v["id"] for v in list_volumes(cloud, settings.boot_volume_name)}
    attached = {a.get("id") for a in server.get("os-extended-volumes:volumes_attached", [])}
    if not vols & attached:
        return False, f"{o.server_name}: {states}, {settings.boot_volume_name} not attached"
    return server.get("status") == "ACTIVE", f"{o.server_name}: {states}, root volume {settings.boot_volume_name}"
