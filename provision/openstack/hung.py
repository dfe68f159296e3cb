"""Which service hangs: an API whose unit is ``active`` but which does not answer is named, with what the
kernel says of its listening socket (connections queued and never accepted), so a boot job that waited on
it and the readiness check both say which service hung instead of only timing out."""

from __future__ import annotations

from ..settings import Settings
from ..target import Target
from .profile import OpenStackProfile


def api_units(prof: OpenStackProfile, settings: Settings) -> dict[str, tuple[str, int]]:
    """API name -> (the unit that serves it on this distribution, its internal port)."""
    o = settings.openstack
    cinder_api = next((u for u in prof.cinder_units if u.startswith("cinder-api")), prof.dashboard_unit)
    return {
        "keystone": (prof.keystone_unit, o.keystone_port),
        "glance": (prof.glance_unit, o.glance_port),
        "cinder": (cinder_api, o.cinder_port),
        "nova": ("nova-api.service", o.nova_port),
        "placement": (prof.placement_unit, o.placement_port),
        "neutron": ("neutron-api.service", o.neutron_port),
    }


def parse_listen_queue(ss_output: str) -> int | None:
    """Connections waiting in a listening socket's accept queue (``ss -Hltn`` Recv-Q), None when nothing listens."""
    queued = [int(fields[1]) for fields in (line.split() for line in ss_output.splitlines()) if len(fields) >= 4 and fields[0] == "LISTEN"]
    return sum(queued) if queued else None


def describe(target: Target, unit: str, port: int) -> str:
    """One sentence on a unit that should answer on ``port``: its state, and its socket's accept queue."""
    r = target.run(["systemctl", "show", "-p", "ActiveState", "-p", "SubState", "-p", "MainPID", unit], check=False)
    fields = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    queue = parse_listen_queue(target.run(["ss", "-Hltn", f"sport = :{port}"], check=False).stdout)
    return sentence(unit, fields, queue, port)


def sentence(unit: str, fields: dict[str, str], queue: int | None, port: int) -> str:
    """What a unit's ``systemctl show`` fields and its port's accept queue say, in one sentence."""
    state = f"{fields.get('ActiveState', '?')} ({fields.get('SubState', '?')}, pid {fields.get('MainPID', '?')})"
    if fields.get("ActiveState") != "active":
        return f"{unit} is {state}; nothing answers on port {port}"
    if queue is None:
        return f"{unit} is {state} but nothing listens on port {port}"
    stuck = f": {queue} connection(s) wait in its accept queue, never accepted" if queue else ""
    return f"{unit} is {state} but does not answer on port {port}{stuck} (it hangs; see `journalctl -u {unit}`)"


def diagnose(target: Target, prof: OpenStackProfile, settings: Settings, api: str) -> str:
    """:func:`describe` for one API of :func:`api_units`."""
    unit, port = api_units(prof, settings)[api]
    return describe(target, unit, port)


def diagnose_unreachable(target: Target, prof: OpenStackProfile, settings: Settings, error: str) -> str:
    """``error`` (an API call that got no answer), and the state of the API it was sent to when the port names one."""
    for unit, port in api_units(prof, settings).values():
        if f":{port}/" in error or error.endswith(f":{port}"):
            return f"{error}; {describe(target, unit, port)}"
    return error
