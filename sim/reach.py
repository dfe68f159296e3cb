"""What a person needs to reach the simulated instance from this host, as lines to print at the
end of ``sim.up`` and ``sim.status``: the dashboard and noVNC URLs, the user, the one command that
prints the admin password (the console output, through the EC2 API), the ``ssh`` lines: to the
instance, and through it to the demo server (whose address the instance's demo-server job
records, :data:`~provision.paths.DEMO_SERVER_NAME`).

The sim's public IPv4 is simulated (nothing routes to it) and its public name resolves nowhere,
so the URLs given use the private address, which the instance's certificate names too.
"""

from __future__ import annotations

import json
import posixpath
import shlex
from typing import Any, Mapping, Sequence

from provision.image.guest_ssh import GUEST_USER
from provision.openstack.ini import ADMIN_USER
from provision.paths import DEMO_SERVER_NAME
from provision.settings import Settings
from provision.target import Target
from provision.tls import https_url

#: The command that prints the console line with the admin password and the certificate's fingerprint.
PASSWORD_COMMAND = "invoke sim.console | grep 'admin password'"


def guest_ssh_argv(key_path: str, login_user: str, ip: str, guest: str, options: Sequence[str] = (),
                   guest_key: str | None = None) -> list[str]:
    """``ssh`` to the demo server at ``guest`` through the instance at ``ip``, with the instance's key.

    A ``ProxyCommand`` rather than ``-J``: ssh does not pass ``-i`` (nor ``-o``) on to the jump
    host, so ``-J`` works only with the key in an agent or ssh's defaults. ``options`` (``-o``
    values) apply to both hops; ``guest_key`` (tests) logs in to the guest with another key.
    """
    opts = [x for o in options for x in ("-o", o)]
    jump = shlex.join(["ssh", "-i", key_path, *opts, "-W", "%h:%p", f"{login_user}@{ip}"])
    return ["ssh", "-i", guest_key or key_path, *opts, "-o", f"ProxyCommand={jump}", f"{GUEST_USER}@{guest}"]


def demo_server_record(target: Target, settings: Settings) -> dict[str, Any] | None:
    """What the instance recorded of its demo server (id, address, key pair), or None (none booted yet)."""
    path = posixpath.join(settings.state_dir, DEMO_SERVER_NAME)
    try:
        data = json.loads(target.read(path).decode())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def reach_lines(status: Mapping[str, Any], settings: Settings, key_path: str, login_user: str,
                guest: Mapping[str, Any] | None = None) -> list[str]:
    """The lines that tell how to reach the instance of ``status`` (``sim.status()``) and its demo server ``guest``."""
    ip = status.get("private_ip")
    if not ip:
        return ["no running instance: `invoke sim.up` launches one"]
    t = settings.tls
    public = status.get("public_hostname") or "-"
    if guest and guest.get("address") and guest.get("key_name"):
        guest_line = f"  guest      {shlex.join(guest_ssh_argv(key_path, login_user, ip, str(guest['address'])))}"
    elif guest and guest.get("address"):
        guest_line = f"  guest      {guest['address']} (booted without a key pair: no SSH login)"
    else:
        guest_line = "  guest      no demo server recorded yet (`invoke sim.status` shows its readiness)"
    return [
        "",
        "Reach it from this host (its public name, " + public + ", is simulated: the certificate names the private address too):",
        f"  dashboard  {https_url(ip, t.dashboard_port)}   user {ADMIN_USER}",
        f"  password   {PASSWORD_COMMAND}   (the console line also gives the certificate's SHA-256 fingerprint)",
        f"  noVNC      {https_url(ip, t.novnc_port, '/vnc_auto.html')}",
        f"  ssh        ssh -i {key_path} {login_user}@{ip}",
        guest_line + "   (the demo server, its root disk the Ceph volume)",
        "  shell      invoke sim.shell",
        "  openstack  invoke sim.clouds   (then: OS_CLIENT_CONFIG_FILE=build/clouds.yaml openstack --os-cloud cephdemo-sim server list)",
    ]
