"""What a person needs to reach the simulated instance from this host, as lines to print at the
end of ``sim.up`` and ``sim.status``: the dashboard and noVNC URLs, the user, the one command that
prints the admin password (the console output, through the EC2 API), the ``ssh`` line.

The sim's public IPv4 is simulated (nothing routes to it) and its public name resolves nowhere,
so the URLs given use the private address, which the instance's certificate names too.
"""

from __future__ import annotations

from typing import Any, Mapping

from provision.openstack.ini import ADMIN_USER
from provision.settings import Settings
from provision.tls import https_url

#: The command that prints the console line with the admin password and the certificate's fingerprint.
PASSWORD_COMMAND = "invoke sim.console | grep 'admin password'"


def reach_lines(status: Mapping[str, Any], settings: Settings, key_path: str, login_user: str) -> list[str]:
    """The lines that tell how to reach the instance of ``status`` (``sim.status()``) from this host."""
    ip = status.get("private_ip")
    if not ip:
        return ["no running instance: `invoke sim.up` launches one"]
    t = settings.tls
    public = status.get("public_hostname") or "-"
    return [
        "",
        "Reach it from this host (its public name, " + public + ", is simulated: the certificate names the private address too):",
        f"  dashboard  {https_url(ip, t.dashboard_port)}   user {ADMIN_USER}",
        f"  password   {PASSWORD_COMMAND}   (the console line also gives the certificate's SHA-256 fingerprint)",
        f"  noVNC      {https_url(ip, t.novnc_port, '/vnc_auto.html')}",
        f"  ssh        ssh -i {key_path} {login_user}@{ip}",
        "  shell      invoke sim.shell",
        "  openstack  invoke sim.clouds   (then: OS_CLIENT_CONFIG_FILE=build/clouds.yaml openstack --os-cloud cephdemo-sim server list)",
    ]
