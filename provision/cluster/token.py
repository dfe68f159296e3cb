"""Join tokens: what a new node carries in its user data to join the cluster, and the controller's record of them.

A token is one line, ``coajoin1.<base64url JSON>``, that holds everything the joiner needs
to reach the controller safely and nothing it could use elsewhere:

* ``controller``/``port``: the controller's private address and its join service;
* ``fingerprint``: SHA-256 of the controller's TLS certificate, so the joiner pins it
  (a self-signed certificate is made per instance: nothing else could vouch for it);
* ``id`` and ``secret``: the one-time credential; the controller keeps only the secret's
  SHA-256 beside the id, its expiry and, once redeemed, who used it and when;
* ``expires``: seconds since the epoch, also recorded on the controller (the authority).

The cluster's shared secrets are never in a token: the controller hands them over once,
over the pinned TLS connection, in exchange for a valid token, and the token is then spent.
Everything here is pure (time and randomness are passed in) so the rules are tested as data.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import re
from dataclasses import asdict, dataclass, replace
from typing import Any, Mapping

from ..exceptions import JoinError

PREFIX = "coajoin1."
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
_ID = re.compile(r"^[0-9a-f]{16}$")
#: A spent or expired record is dropped from the controller's store this long after it ended.
KEEP_ENDED_S = 7 * 24 * 3600


@dataclass(frozen=True)
class Token:
    """What a join token carries (see the module's docstring)."""

    controller: str
    port: int
    fingerprint: str
    id: str
    secret: str
    expires: int


@dataclass(frozen=True)
class Record:
    """The controller's record of one token: never the secret itself."""

    id: str
    secret_sha256: str
    issued: int
    expires: int
    used_at: int | None = None
    used_by: str | None = None
    revoked: bool = False
    #: The name the controller gives the node that joins with this token (``cephdemo-2``...).
    node_name: str | None = None


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def issue(
    *, controller: str, port: int, fingerprint: str, now: int, ttl_s: int, random_id: bytes, random_secret: bytes
) -> tuple[Token, Record]:
    """Make a new token and the record the controller keeps of it.

    Args:
        controller: the controller's private IPv4 address.
        port: its join service's port.
        fingerprint: SHA-256 (hex, any case, colons allowed) of its TLS certificate.
        now: seconds since the epoch.
        ttl_s: the token's lifetime.
        random_id: 8 random bytes (``os.urandom(8)``).
        random_secret: 32 random bytes (``os.urandom(32)``).

    Raises:
        JoinError: an argument is not what a token can carry.
    """
    if len(random_id) != 8 or len(random_secret) < 32:
        raise JoinError("A join token needs an 8-byte id and a secret of at least 32 random bytes")
    if ttl_s <= 0:
        raise JoinError(f"A join token's lifetime must be positive, not {ttl_s} s", hint="set cluster.token_ttl_s")
    token = Token(
        controller=controller,
        port=port,
        fingerprint=normalise_fingerprint(fingerprint),
        id=random_id.hex(),
        secret=base64.urlsafe_b64encode(random_secret).decode().rstrip("="),
        expires=now + ttl_s,
    )
    _check(token)
    return token, Record(id=token.id, secret_sha256=_sha256(token.secret), issued=now, expires=token.expires)


def normalise_fingerprint(fingerprint: str) -> str:
    """``AB:CD:...`` or ``abcd...`` as 64 lowercase hex digits.

    Raises:
        JoinError: not a SHA-256 fingerprint.
    """
    fp = fingerprint.replace(":", "").strip().lower()
    if not _FINGERPRINT.match(fp):
        raise JoinError(f"{fingerprint!r} is not a SHA-256 certificate fingerprint")
    return fp


def encode(token: Token) -> str:
    """The token as the one line a user puts in the joiner's user data."""
    payload = json.dumps(asdict(token), separators=(",", ":"), sort_keys=True).encode()
    return PREFIX + base64.urlsafe_b64encode(payload).decode().rstrip("=")


def decode(text: str) -> Token:
    """Parse a token line (surrounding blanks ignored).

    Raises:
        JoinError: the text is not a well-formed token; the message never repeats the text.
    """
    text = text.strip()
    if not text.startswith(PREFIX):
        raise JoinError(
            f"The join token does not start with {PREFIX!r}",
            hint="paste the whole line `invoke cluster.token` printed",
        )
    body = text[len(PREFIX):]
    try:
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError) as e:
        raise JoinError("The join token is damaged (not base64url JSON)", hint="paste the whole line again") from e
    if not isinstance(data, dict):
        raise JoinError("The join token is damaged (not an object)", hint="paste the whole line again")
    fields = {f: data.get(f) for f in Token.__dataclass_fields__}
    try:
        token = Token(
            controller=str(fields["controller"]),
            port=int(fields["port"]),  # type: ignore[arg-type]
            fingerprint=str(fields["fingerprint"]),
            id=str(fields["id"]),
            secret=str(fields["secret"]),
            expires=int(fields["expires"]),  # type: ignore[arg-type]
        )
    except (TypeError, ValueError) as e:
        missing = sorted(k for k, v in fields.items() if v is None)
        raise JoinError(f"The join token lacks {', '.join(missing) or 'a valid field'}") from e
    _check(token)
    return token


def _check(token: Token) -> None:
    try:
        if ipaddress.ip_address(token.controller).version != 4:
            raise ValueError(token.controller)
    except ValueError as e:
        raise JoinError(f"The join token's controller {token.controller!r} is not an IPv4 address") from e
    if not 0 < token.port < 65536:
        raise JoinError(f"The join token's port {token.port} is not a TCP port")
    if not _FINGERPRINT.match(token.fingerprint):
        raise JoinError("The join token's certificate fingerprint is not 64 hex digits")
    if not _ID.match(token.id):
        raise JoinError("The join token's id is not 16 hex digits")
    if len(token.secret) < 43:
        raise JoinError("The join token's secret is too short")


def redeem(records: Mapping[str, Record], token_id: str, secret: str, *, now: int, joiner: str) -> Record:
    """Check a presented token against the controller's records; return its record marked as used.

    The caller stores the returned record before it hands anything over, so a token is
    spent even if the hand-over fails half-way (the joiner asks for a new one).

    Raises:
        JoinError: unknown id, wrong secret, revoked, expired or already used, each with its own sentence.
    """
    rec = records.get(token_id)
    if rec is None:
        raise JoinError(f"Join token {token_id} is unknown to this controller", hint="issue one with `invoke cluster.token`")
    if not hmac.compare_digest(rec.secret_sha256, _sha256(secret)):
        raise JoinError(f"Join token {token_id}: the secret does not match", hint="paste the whole token line again")
    if rec.revoked:
        raise JoinError(f"Join token {token_id} was revoked", hint="issue a new one with `invoke cluster.token`")
    if rec.used_at is not None:
        raise JoinError(
            f"Join token {token_id} was already used by {rec.used_by} at {rec.used_at}",
            hint="a token joins one node once; issue a new one with `invoke cluster.token`",
        )
    if now >= rec.expires:
        raise JoinError(
            f"Join token {token_id} expired {now - rec.expires} s ago",
            hint="issue a new one with `invoke cluster.token` (lifetime: cluster.token_ttl_s)",
        )
    return replace(rec, used_at=now, used_by=joiner)


def revoke(records: Mapping[str, Record], token_id: str) -> dict[str, Record]:
    """The records with ``token_id`` revoked: it can no longer join, and its cephx user goes.

    Unchanged when the id is unknown or already revoked. A used token is revoked too: its
    cephx user (which the joiner creates its OSDs with) is then removed before its expiry.
    """
    out = dict(records)
    rec = out.get(token_id)
    if rec is not None and not rec.revoked:
        out[token_id] = replace(rec, revoked=True)
    return out


def prune(records: Mapping[str, Record], *, now: int) -> dict[str, Record]:
    """The records without those that ended more than a week ago.

    A used token ended when it was used; an unused one (revoked or not) when it expires.
    """

    def ended(rec: Record) -> int:
        return rec.used_at if rec.used_at is not None else rec.expires

    return {k: r for k, r in records.items() if now - ended(r) <= KEEP_ENDED_S}


def dump_records(records: Mapping[str, Record]) -> str:
    """The controller's store as JSON text (written 0600 by the caller)."""
    return json.dumps({k: asdict(r) for k, r in sorted(records.items())}, indent=1, sort_keys=True) + "\n"


def load_records(text: str) -> dict[str, Record]:
    """Parse the controller's store; an empty text is an empty store.

    Raises:
        JoinError: the store is not what :func:`dump_records` writes.
    """
    if not text.strip():
        return {}
    try:
        data: Any = json.loads(text)
        return {k: Record(**v) for k, v in data.items()}
    except (ValueError, TypeError, AttributeError) as e:
        raise JoinError("The controller's join token store is damaged", hint="revoke all tokens by removing it") from e
