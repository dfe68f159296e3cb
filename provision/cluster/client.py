"""The joiner's side of the join service: present the token to the controller, pinning its certificate.

The controller's certificate is self-signed (made at its first boot), so no CA can vouch
for it; the token carries its SHA-256 fingerprint instead. The connection is checked
against that fingerprint after the TLS handshake and *before* the token's secret is sent:
a machine in the middle learns nothing it could redeem. Standard library only.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import socket
import ssl
from typing import Any

from ..exceptions import JoinError
from .service import PATH
from .token import Token


def redeem(token: Token, joiner: str, timeout_s: float = 15.0) -> dict[str, Any]:
    """Trade ``token`` for the cluster's hand-over at the controller it names.

    Raises:
        JoinError: the controller cannot be reached, its certificate is not the pinned one,
            or it refused the token (its sentence is passed on).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # trust comes from the pinned fingerprint, checked below
    where = f"{token.controller}:{token.port}"
    conn = http.client.HTTPSConnection(token.controller, token.port, timeout=timeout_s, context=ctx)
    try:
        try:
            conn.connect()
        except (OSError, ssl.SSLError) as e:
            raise JoinError(f"Cannot reach the controller's join service at {where}: {e}",
                            hint="is the controller ready, and does the security group let the nodes reach each other?") from e
        sock = conn.sock
        der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
        seen = hashlib.sha256(der or b"").hexdigest()
        if not hmac.compare_digest(seen, token.fingerprint):
            raise JoinError(f"The join service at {where} shows certificate {seen[:16]}..., not the token's "
                            f"{token.fingerprint[:16]}...",
                            hint="the token belongs to another controller, or something sits in between")
        body = json.dumps({"id": token.id, "secret": token.secret, "joiner": joiner})
        try:
            conn.request("POST", PATH, body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, socket.timeout, http.client.HTTPException) as e:
            raise JoinError(f"The join service at {where} did not answer: {e}") from e
    finally:
        conn.close()
    try:
        answer = json.loads(data)
    except ValueError as e:
        raise JoinError(f"The join service at {where} answered {resp.status} without JSON") from e
    if resp.status != 200 or not isinstance(answer, dict):
        reason = answer.get("error") if isinstance(answer, dict) else None
        raise JoinError(f"The controller refused to join this node: {reason or f'HTTP {resp.status}'}")
    return answer
