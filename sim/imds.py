"""The simulation's instance metadata service: each launched instance's own data, with IMDSv2 semantics.

moto answers ``/latest/meta-data/*`` with fixed values unrelated to the instances it
launched, accepts any token and has no public keys. This server answers per instance
instead: a resolver maps the request's *source address* to an :class:`InstanceView`
built from moto's ``describe_instances`` (see :func:`instance_view`), and the token
rules are EC2's:

* ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds`` in 1..21600
  returns a token bound to the asking instance (400 for a missing or bad TTL, 403 when
  the request carries ``X-Forwarded-For``, 405 for other methods).
* ``X-aws-ec2-metadata-token`` on a GET must be a live token of that instance (else 401);
  without a token a GET is answered only when ``HttpTokens`` is ``optional`` (IMDSv1).
* Unknown paths are 404; directories list their entries (``name/`` for subdirectories),
  with or without the trailing slash; ``public-keys/`` lists ``0=KEYNAME``.
* The PUT's answer leaves with the IP TTL set to ``HttpPutResponseHopLimit``, as on EC2,
  so a token cannot be fetched from further away than the hop limit allows.

Standard library only. :func:`metadata_tree` is a pure function, and
:meth:`IMDSServer.respond` decides an answer without any socket, so both are tested as data.
"""

from __future__ import annotations

import collections
import datetime as _dt
import hashlib
import json
import logging
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import urlsplit

from provision.exceptions import SimError

log = logging.getLogger(__name__)

TOKEN_PATH = "/latest/api/token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
MAX_TOKEN_TTL = 21600

# --- the tree: pure data ---------------------------------------------------------
def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def _iso(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, _dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(_dt.timezone.utc)
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def _fake_mac(instance_id: str) -> str:
    digest = hashlib.sha256(instance_id.encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in digest[:5])


def _group_names(groups: Iterable[Mapping[str, Any]]) -> list[str]:
    return [g["GroupName"] for g in groups if g.get("GroupName")]


def metadata_tree(
    instance: Mapping[str, Any],
    public_key: str | None,
    region: str,
    *,
    reservation_id: str | None = None,
    user_data: str | bytes | None = None,
    account_id: str | None = None,
) -> dict[str, str]:
    """Map a boto3 ``describe_instances`` Instance to the paths its metadata service serves.

    Keys are paths below ``/latest/`` (``meta-data/instance-id``,
    ``dynamic/instance-identity/document``, ``user-data``); values are the bodies. A key
    ending in ``/`` overrides the listing of that directory (EC2 lists ``public-keys/``
    as ``0=KEYNAME``); every other listing is derived by :func:`lookup`. Values EC2
    leaves out (no public address, no key pair, tags not enabled) are absent, so they
    answer 404 as on EC2.

    Args:
        instance: one element of ``Reservations[].Instances[]``.
        public_key: the OpenSSH public key of the instance's key pair, or None.
        region: the region the instance runs in.
        reservation_id: ``Reservations[].ReservationId`` (the Instance dict lacks it).
        user_data: the instance's user data, if any.
        account_id: owner account; defaults to the network interface's ``OwnerId``.
    """
    iid = instance["InstanceId"]
    az = instance.get("Placement", {}).get("AvailabilityZone") or f"{region}a"
    private_ip = instance.get("PrivateIpAddress") or ""
    private_dns = instance.get("PrivateDnsName") or ""
    public_ip = instance.get("PublicIpAddress") or ""
    public_dns = instance.get("PublicDnsName") or ""
    enis = sorted(instance.get("NetworkInterfaces") or [], key=lambda e: e.get("Attachment", {}).get("DeviceIndex", 0))
    primary = enis[0] if enis else {}
    mac = primary.get("MacAddress") or _fake_mac(iid)
    account = account_id or primary.get("OwnerId") or "123456789012"
    group_names = _group_names(instance.get("SecurityGroups") or []) or _group_names(primary.get("Groups") or [])
    options = instance.get("MetadataOptions") or {}

    md: dict[str, str] = {
        "ami-id": instance.get("ImageId", ""),
        "ami-launch-index": str(instance.get("AmiLaunchIndex", 0)),
        "ami-manifest-path": "(unknown)",
        "hostname": private_dns,
        "instance-action": "none",
        "instance-id": iid,
        "instance-life-cycle": "spot" if instance.get("InstanceLifecycle") == "spot" else "on-demand",
        "instance-type": instance.get("InstanceType", ""),
        "local-hostname": private_dns,
        "local-ipv4": private_ip,
        "mac": mac,
        "placement/availability-zone": az,
        "placement/region": region,
        "profile": "default-hvm",
        "services/domain": "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com",
        "services/partition": _partition(region),
    }
    if public_ip:
        md["public-ipv4"] = public_ip
    if public_dns:
        md["public-hostname"] = public_dns
    if reservation_id:
        md["reservation-id"] = reservation_id
    if group_names:
        md["security-groups"] = "\n".join(group_names)
    root_device = instance.get("RootDeviceName")
    if root_device:
        md["block-device-mapping/ami"] = root_device
        md["block-device-mapping/root"] = root_device
    ebs = [m["DeviceName"] for m in instance.get("BlockDeviceMappings") or [] if m.get("DeviceName") != root_device]
    for n, device in enumerate(ebs, start=1):
        md[f"block-device-mapping/ebs{n}"] = device
    if public_key:
        md["public-keys/"] = f"0={instance.get('KeyName') or 'key'}"
        md["public-keys/0/openssh-key"] = public_key.strip()

    for index, eni in enumerate(enis or [{}]):
        emac = eni.get("MacAddress") or mac
        base = f"network/interfaces/macs/{emac}/"
        assoc = eni.get("Association") or {}
        is_primary = index == 0
        eni_public_ip = assoc.get("PublicIp") or (public_ip if is_primary else "")
        eni_public_dns = (public_dns if is_primary else "") or assoc.get("PublicDnsName") or ""
        privates = [p["PrivateIpAddress"] for p in eni.get("PrivateIpAddresses") or [] if p.get("PrivateIpAddress")]
        entries = {
            "device-number": str(eni.get("Attachment", {}).get("DeviceIndex", 0)),
            "interface-id": eni.get("NetworkInterfaceId", ""),
            "local-hostname": eni.get("PrivateDnsName") or private_dns,
            "local-ipv4s": "\n".join(privates) or eni.get("PrivateIpAddress") or private_ip,
            "mac": emac,
            "owner-id": eni.get("OwnerId") or account,
            "security-group-ids": "\n".join(g["GroupId"] for g in eni.get("Groups") or [] if g.get("GroupId")),
            "security-groups": "\n".join(_group_names(eni.get("Groups") or [])),
            "subnet-id": eni.get("SubnetId") or instance.get("SubnetId") or "",
            "vpc-id": eni.get("VpcId") or instance.get("VpcId") or "",
        }
        if eni_public_ip:
            entries["public-ipv4s"] = eni_public_ip
            entries[f"ipv4-associations/{eni_public_ip}"] = eni.get("PrivateIpAddress") or private_ip
        if eni_public_dns:
            entries["public-hostname"] = eni_public_dns
        md.update({base + k: v for k, v in entries.items() if v})

    if options.get("InstanceMetadataTags") == "enabled":
        for tag in instance.get("Tags") or []:
            if "/" not in tag["Key"]:
                md[f"tags/instance/{tag['Key']}"] = tag.get("Value", "")

    document = {
        "accountId": account,
        "architecture": instance.get("Architecture", "x86_64"),
        "availabilityZone": az,
        "billingProducts": None,
        "devpayProductCodes": None,
        "marketplaceProductCodes": None,
        "imageId": instance.get("ImageId", ""),
        "instanceId": iid,
        "instanceType": instance.get("InstanceType", ""),
        "kernelId": instance.get("KernelId"),
        "pendingTime": _iso(instance.get("LaunchTime")),
        "privateIp": private_ip or None,
        "ramdiskId": instance.get("RamdiskId"),
        "region": region,
        "version": "2017-09-30",
    }
    tree = {f"meta-data/{k}": v for k, v in md.items()}
    tree["dynamic/instance-identity/document"] = json.dumps(document, indent=2)
    if user_data is not None:
        tree["user-data"] = user_data.decode("utf-8", errors="replace") if isinstance(user_data, bytes) else user_data
    return tree


def lookup(tree: Mapping[str, str], path: str) -> str | None:
    """Return the body for ``path`` (relative to ``/latest/``) in ``tree``, or None for 404.

    A leaf answers its value; a directory (with or without its trailing slash) answers
    its listing: an explicit ``dir/`` key if present, otherwise its children one per
    line, subdirectories with a trailing ``/``. The ``/latest/`` listing itself has no
    slashes (``dynamic``, ``meta-data``, ``user-data``), as on EC2.
    """
    rel = path.strip("/")
    if rel and rel in tree and not path.endswith("/"):
        return tree[rel]
    prefix = rel + "/" if rel else ""
    if prefix and prefix in tree:
        return tree[prefix]
    children: dict[str, bool] = {}
    for key in tree:
        if key.startswith(prefix) and len(key) > len(prefix):
            head, sep, _ = key[len(prefix) :].partition("/")
            children[head] = children.get(head, False) or bool(sep)
    if not children:
        return tree.get(rel) if rel else None
    if not rel:
        return "\n".join(sorted(children))
    return "\n".join(sorted(f"{name}/" if sub else name for name, sub in children.items()))


@dataclass(frozen=True)
class InstanceView:
    """What the metadata service knows about one instance: its tree and its metadata options.

    Attributes:
        tree: paths below ``/latest/`` to bodies (see :func:`metadata_tree`).
        http_tokens: ``"optional"`` (IMDSv1 allowed) or ``"required"`` (tokens only).
        hop_limit: IP TTL of the token PUT's answer (``HttpPutResponseHopLimit``).
        enabled: False when ``HttpEndpoint`` is ``disabled``: every request gets 403.
    """

    tree: Mapping[str, str]
    http_tokens: str = "optional"
    hop_limit: int = 1
    enabled: bool = True

    @property
    def instance_id(self) -> str:
        """The instance this view describes (tokens are bound to it)."""
        return self.tree.get("meta-data/instance-id", "")


def instance_view(
    instance: Mapping[str, Any],
    public_key: str | None,
    region: str,
    **tree_options: Any,
) -> InstanceView:
    """Build the :class:`InstanceView` of a ``describe_instances`` Instance, honouring its ``MetadataOptions``.

    ``tree_options`` go to :func:`metadata_tree` (``reservation_id``, ``user_data``, ``account_id``).
    """
    options = instance.get("MetadataOptions") or {}
    return InstanceView(
        tree=metadata_tree(instance, public_key, region, **tree_options),
        http_tokens=options.get("HttpTokens") or "optional",
        hop_limit=int(options.get("HttpPutResponseHopLimit") or 1),
        enabled=(options.get("HttpEndpoint") or "enabled") == "enabled",
    )


Resolver = Callable[[str], "InstanceView | None"]


# --- the server ------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    """The server's decision for one request: status, body, extra headers, and the IP TTL to send with."""

    status: int
    body: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    ip_ttl: int | None = None


@dataclass(frozen=True)
class RequestRecord:
    """One answered request, kept for tests and debugging."""

    client: str
    method: str
    path: str
    status: int


_REASON_BODY = {
    400: "400 - Bad Request",
    401: "401 - Unauthorized",
    403: "403 - Forbidden",
    404: "404 - Not Found",
    405: "405 - Method Not Allowed",
}


def _plain(status: int, detail: str = "", **headers: str) -> Answer:
    body = _REASON_BODY.get(status, str(status))
    return Answer(status, body + (f"\n{detail}" if detail else "") + "\n", headers)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    imds: "IMDSServer"


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    server_version = "EC2ws"
    sys_version = ""

    def _serve(self) -> None:
        imds = self.server.imds
        client = self.client_address[0]
        headers = {k: v for k, v in self.headers.items()}
        answer = imds.respond(client, self.command, self.path, headers)
        if answer.ip_ttl is not None and imds.enforce_hop_limit:
            _set_ttl(self.connection, answer.ip_ttl)
        data = answer.body.encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (BaseHTTPRequestHandler's name)
        log.debug("imds %s " + format, self.client_address[0], *args)


def _set_ttl(sock: socket.socket, ttl: int) -> None:
    try:
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
        else:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    except OSError as e:  # not fatal: the answer still goes out, only without the hop limit
        log.warning("cannot set the hop limit %d on a metadata answer: %s", ttl, e)


class IMDSServer:
    """An HTTP metadata service answering each instance by the request's source address.

    Args:
        host: address to bind (``169.254.169.254`` inside the sim's metadata network,
            ``127.0.0.1`` in tests).
        port: port to bind; 0 picks a free one (see :attr:`address`).
        resolve: maps a client IP to its :class:`InstanceView`, or None when no instance
            has that address (e.g. ``views.get`` for a dict of views).
        enforce_hop_limit: send the token PUT's answer with the IP TTL set to the hop limit.
        clock: monotonic clock for token expiry (injectable for tests).

    Usage::

        with IMDSServer("127.0.0.1", 0, views.get) as server:
            url = server.url
    """

    def __init__(
        self,
        host: str,
        port: int,
        resolve: Resolver,
        *,
        enforce_hop_limit: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.resolve = resolve
        self.host = host
        self.port = port
        self.enforce_hop_limit = enforce_hop_limit
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}
        self._log: collections.deque[RequestRecord] = collections.deque(maxlen=2000)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------
    def start(self) -> "IMDSServer":
        """Bind and serve in a background thread; return self.

        Raises:
            SimError: the address cannot be bound.
        """
        if self._httpd is not None:
            return self
        try:
            httpd = _HTTPServer((self.host, self.port), _Handler)
        except OSError as e:
            raise SimError(
                f"Cannot bind the metadata server to {self.host}:{self.port}: {e}",
                hint="is another metadata server running, or is the address not on any interface?",
            ) from e
        httpd.imds = self
        self._httpd = httpd
        # A short poll interval makes stop() quick; the loop itself costs nothing noticeable.
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"imds-{self.host}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the socket (idempotent)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "IMDSServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the real port once started with port 0."""
        if self._httpd is None:
            return self.host, self.port
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """Base URL of the server (``http://HOST:PORT``)."""
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def requests(self) -> list[RequestRecord]:
        """The most recent answered requests, oldest first."""
        with self._lock:
            return list(self._log)

    def count(self, method: str | None = None, path: str | None = None, status: int | None = None) -> int:
        """How many recorded requests match all given criteria."""
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method)
            and (path is None or r.path == path)
            and (status is None or r.status == status)
        )

    def revoke_tokens(self) -> None:
        """Forget every issued token (as after a stop/start of the instance)."""
        with self._lock:
            self._tokens.clear()

    # --- the decision, without sockets ------------------------------------------
    def respond(self, client: str, method: str, raw_path: str, headers: Mapping[str, str]) -> Answer:
        """Decide the answer to one request from ``client`` (its source IP).

        Args:
            client: the request's source address.
            method: HTTP method.
            raw_path: request target as sent (query strings and repeated slashes are tolerated).
            headers: request headers (case-insensitive lookup is done here).
        """
        path = re.sub(r"/{2,}", "/", urlsplit(raw_path).path) or "/"
        try:
            answer = self._decide(client, method, path, {k.lower(): v for k, v in headers.items()})
        except Exception as e:  # a resolver bug must not kill the server thread silently
            log.exception("metadata request %s %s from %s failed", method, path, client)
            answer = Answer(500, f"500 - Internal Server Error\n{type(e).__name__}: {e}\n")
        with self._lock:
            self._log.append(RequestRecord(client, method, path, answer.status))
        return answer

    def _decide(self, client: str, method: str, path: str, headers: Mapping[str, str]) -> Answer:
        view = self.resolve(client)
        if view is None:
            return _plain(
                403,
                f"No simulated instance has the address {client}; this metadata server answers launched instances only.",
            )
        if not view.enabled:
            return _plain(403, "The instance metadata endpoint is disabled for this instance (HttpEndpoint=disabled).")
        if path == TOKEN_PATH:
            return self._token_request(view, method, headers)
        if method not in ("GET", "HEAD"):
            return _plain(405, Allow="GET, HEAD")
        extra: dict[str, str] = {}
        token = headers.get(TOKEN_HEADER.lower())
        if token is not None:
            remaining = self._check_token(token, view.instance_id)
            if remaining is None:
                return _plain(401)
            extra[TTL_HEADER] = str(remaining)
        elif view.http_tokens == "required":
            return _plain(401)
        if path == "/":
            return Answer(200, "latest", extra)
        if path != "/latest" and not path.startswith("/latest/"):
            return _plain(404)
        body = lookup(view.tree, path[len("/latest") :].lstrip("/") + ("/" if path.endswith("/") else ""))
        if body is None:
            return _plain(404)
        return Answer(200, body, extra)

    def _token_request(self, view: InstanceView, method: str, headers: Mapping[str, str]) -> Answer:
        if method != "PUT":
            return _plain(405, Allow="PUT")
        if "x-forwarded-for" in headers:
            return _plain(403)
        raw = headers.get(TTL_HEADER.lower())
        try:
            ttl = int(raw) if raw is not None else 0
        except ValueError:
            ttl = 0
        if not 1 <= ttl <= MAX_TOKEN_TTL:
            return _plain(400, f"{TTL_HEADER} must be an integer from 1 to {MAX_TOKEN_TTL}.")
        token = secrets.token_urlsafe(42)
        now = self._clock()
        with self._lock:
            self._tokens = {t: v for t, v in self._tokens.items() if v[1] > now}
            self._tokens[token] = (view.instance_id, now + ttl)
        return Answer(200, token, {TTL_HEADER: str(ttl)}, ip_ttl=view.hop_limit)

    def _check_token(self, token: str, instance_id: str) -> int | None:
        """Seconds the token has left, or None when it is unknown, expired or another instance's."""
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None or entry[0] != instance_id:
            return None
        left = entry[1] - self._clock()
        return max(1, int(left)) if left > 0 else None
