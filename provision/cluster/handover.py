"""What the controller hands a joining node for a valid token, and what the node checks before it uses it.

Least privilege, by node kind: a compute/storage node gets what ``nova-compute``, the Neutron
agent and its OSDs need and nothing else: no admin password, no database password, no
Erlang cookie, no dashboard key, never ``client.admin``.

* Ceph: the fsid, the monitors' addresses, the public network; a cephx user made for this
  token alone (``client.join-<id>``, caps ``profile bootstrap-osd``, removed once the node's
  OSDs exist or the token expires); the ``client.volumes`` key that libvirt's secret holds.
  A node that is to run a monitor also gets the ``mon.`` keyring (every monitor shares it:
  Ceph has no narrower way to let a monitor into the quorum).
* OpenStack: the controller's private address and the passwords named in
  :data:`COMPUTE_SECRETS` (the broker's, and the service users nova-compute authenticates as).
* The node's name (``cephdemo-2``...), chosen by the controller: every instance of the AMI
  is ``cephdemo`` until it joins, and CRUSH, Nova and the monitors need one name per host.

Pure: the controller's facts in, a JSON-able dict out; the joiner's dict in, a checked
:class:`Handover` out.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

from ..exceptions import JoinError

#: The OpenStack secrets a compute node needs (fields of ``openstack.secrets.Secrets``).
COMPUTE_SECRETS = ("rabbit", "nova_service", "placement_service", "neutron_service", "libvirt_secret_uuid")
#: Caps of the per-token cephx user that lets a node create its own OSDs.
JOIN_OSD_CAPS = (("mon", "allow profile bootstrap-osd"),)
VERSION = 1
_KEY = re.compile(r"^[A-Za-z0-9+/]{38,}={0,2}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def join_entity(token_id: str) -> str:
    """The cephx user made for one join token."""
    return f"client.join-{token_id}"


@dataclass(frozen=True)
class Handover:
    """What a joining node receives (see the module's docstring). ``repr`` shows no secret."""

    node_name: str
    controller: str
    fsid: str
    mon_ips: tuple[str, ...]
    public_network: str
    osd_entity: str
    osd_key: str = field(repr=False)
    volumes_key: str = field(repr=False)
    openstack: Mapping[str, str] = field(repr=False)
    mon_keyring: str | None = field(default=None, repr=False)

    @property
    def runs_monitor(self) -> bool:
        """Whether this node is to add a monitor to the quorum."""
        return self.mon_keyring is not None


def node_name(hostname: str, taken: Iterable[str]) -> str:
    """The lowest free ``<hostname>-<n>`` (n >= 2: the controller is node 1 and keeps ``hostname``)."""
    used = set(taken)
    n = 2
    while f"{hostname}-{n}" in used:
        n += 1
    return f"{hostname}-{n}"


def wants_monitor(monitors: int, max_monitors: int) -> bool:
    """Whether a joining node adds a monitor: while the quorum has fewer than ``max_monitors``."""
    return monitors < max_monitors


def to_dict(h: Handover) -> dict[str, Any]:
    """The hand-over as the join service sends it."""
    d = asdict(h)
    d["mon_ips"] = list(h.mon_ips)
    d["openstack"] = dict(h.openstack)
    d["version"] = VERSION
    return d


def from_dict(data: Mapping[str, Any]) -> Handover:
    """Check what the controller sent before anything of it is used.

    Raises:
        JoinError: a field is missing or malformed; the message names the field, never its value.
    """
    if data.get("version") != VERSION:
        raise JoinError(f"The controller's hand-over is version {data.get('version')!r}, this node reads {VERSION}",
                        hint="launch the node from the same AMI as the controller")
    try:
        h = Handover(
            node_name=_text(data, "node_name"),
            controller=_ipv4(_text(data, "controller"), "controller"),
            fsid=_text(data, "fsid"),
            mon_ips=tuple(_ipv4(str(ip), "mon_ips") for ip in data["mon_ips"]),
            public_network=_text(data, "public_network"),
            osd_entity=_text(data, "osd_entity"),
            osd_key=_text(data, "osd_key"),
            volumes_key=_text(data, "volumes_key"),
            openstack={k: str(v) for k, v in dict(data["openstack"]).items()},
            mon_keyring=data.get("mon_keyring"),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise JoinError(f"The controller's hand-over lacks or garbles {e}") from e
    _check(h)
    return h


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str) or not value:
        raise ValueError(key)
    return value


def _ipv4(text: str, what: str) -> str:
    try:
        if ipaddress.ip_address(text).version == 4:
            return text
    except ValueError:
        pass
    raise ValueError(what)


def _check(h: Handover) -> None:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", h.node_name):
        raise JoinError("The controller's hand-over names this node with an invalid hostname")
    if not _UUID.match(h.fsid):
        raise JoinError("The controller's hand-over has no valid cluster fsid")
    if not h.mon_ips:
        raise JoinError("The controller's hand-over lists no monitor")
    try:
        net = ipaddress.ip_network(h.public_network, strict=False)
    except ValueError as e:
        raise JoinError("The controller's hand-over has no valid public network") from e
    if any(ipaddress.ip_address(ip) not in net for ip in h.mon_ips):
        raise JoinError("The controller's hand-over lists a monitor outside its public network")
    if not h.osd_entity.startswith("client.join-"):
        raise JoinError("The controller's hand-over offers a cephx user other than this token's")
    for name, key in (("osd_key", h.osd_key), ("volumes_key", h.volumes_key)):
        if not _KEY.match(key):
            raise JoinError(f"The controller's hand-over has no valid {name}")
    missing = sorted(set(COMPUTE_SECRETS) - set(h.openstack))
    extra = sorted(set(h.openstack) - set(COMPUTE_SECRETS))
    if missing:
        raise JoinError(f"The controller's hand-over lacks the OpenStack secrets {', '.join(missing)}")
    if extra:
        raise JoinError(f"The controller's hand-over carries secrets a compute node must not hold: {', '.join(extra)}")
    if h.mon_keyring is not None and "[mon.]" not in h.mon_keyring:
        raise JoinError("The controller's hand-over has a monitor keyring without the mon. entity")


def compute_secrets(all_secrets: Mapping[str, str]) -> dict[str, str]:
    """Of the controller's OpenStack secrets, only those a compute node needs.

    Raises:
        JoinError: the controller lacks one of them (its provisioning is older than this code).
    """
    missing = [k for k in COMPUTE_SECRETS if k not in all_secrets]
    if missing:
        raise JoinError(f"The controller has no {', '.join(missing)}", hint="re-provision the controller")
    return {k: all_secrets[k] for k in COMPUTE_SECRETS}
