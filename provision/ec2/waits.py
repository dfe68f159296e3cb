"""Bounded waits on EC2 state: the delay and the number of checks are parameters, and a timeout
names the resource and its last state. (Not :func:`provision.systemd.wait_for`, a boolean probe
on a host: :func:`wait_state` polls ``(state, detail)`` and fails at once on a hopeless state.)
"""

from __future__ import annotations

import socket
import time
from typing import Any, Callable, Collection

from ..exceptions import AwsError, WaitTimeout
from .api import GONE_CODES, try_call
from .plan import BuilderHost


def wait_state(
    get_state: Callable[[], tuple[str, str]],
    *,
    resource: str,
    want: str | Collection[str],
    fail: Collection[str] = (),
    delay: float,
    attempts: int,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Poll ``get_state`` until it returns a wanted state; return that state.

    Args:
        get_state: returns ``(state, detail)``; detail explains the state (may be '').
        resource: what is waited for, for messages (``instance i-123 in us-east-1``).
        want: the state(s) to wait for.
        fail: states that will never become wanted; reaching one raises at once.
        delay: seconds between checks.
        attempts: how many checks before giving up (at least 1).
        sleep: the sleep function (tests pass a no-op).

    Raises:
        WaitTimeout: ``attempts`` checks passed without a wanted state; names the last state.
        AwsError: a ``fail`` state was reached.
    """
    wanted = {want} if isinstance(want, str) else set(want)
    label = "/".join(sorted(wanted))
    state, detail = "unknown", ""
    for attempt in range(1, max(1, attempts) + 1):
        state, detail = get_state()
        if state in wanted:
            return state
        if state in fail:
            more = f" ({detail})" if detail else ""
            raise AwsError(
                f"{resource} is {state!r}{more}; it will not become {label}", hint="look at the resource in the EC2 console for the reason"
            )
        if attempt < attempts:
            sleep(delay)
    more = f" ({detail})" if detail else ""
    raise WaitTimeout(
        f"Timed out waiting for {resource} to become {label}: last state {state!r}{more} after {attempts} checks {delay:g}s apart",
        hint="raise wait_attempts/wait_delay (or ssh_attempts/ssh_delay), or inspect the resource in the EC2 console",
    )


def instance_state(client: Any, instance_id: str) -> tuple[str, str]:
    """``(state, reason)`` of an instance; ``("gone", ...)`` when EC2 no longer knows it."""
    resp = try_call(client, f"describe instance {instance_id}", "describe_instances", ignore=GONE_CODES, InstanceIds=[instance_id])
    if resp is None:
        return "gone", "not found"
    for reservation in resp.get("Reservations", []):
        for inst in reservation.get("Instances", []):
            if inst.get("InstanceId") == instance_id:
                return inst["State"]["Name"], inst.get("StateReason", {}).get("Message", "")
    return "gone", "not found"


def image_state(client: Any, ami_id: str) -> tuple[str, str]:
    """``(state, reason)`` of an image; ``("gone", ...)`` when it no longer exists."""
    resp = try_call(client, f"describe image {ami_id}", "describe_images", ignore=GONE_CODES, ImageIds=[ami_id])
    images = (resp or {}).get("Images", [])
    if not images:
        return "gone", "not found"
    return images[0].get("State", "unknown"), images[0].get("StateReason", {}).get("Message", "")


def wait_instance(
    client: Any,
    instance_id: str,
    want: str,
    *,
    region: str,
    delay: float,
    attempts: int,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Wait for an instance to reach ``want`` (``running``, ``stopped``, ``terminated``)."""
    fail = {
        "running": {"shutting-down", "terminated", "stopping", "stopped", "gone"},
        "stopped": {"shutting-down", "terminated", "gone"},
        "terminated": set(),
    }.get(want, set())
    wanted: set[str] = {"terminated", "gone"} if want == "terminated" else {want}
    return wait_state(
        lambda: instance_state(client, instance_id),
        resource=f"instance {instance_id} in {region}",
        want=wanted,
        fail=fail,
        delay=delay,
        attempts=attempts,
        sleep=sleep,
    )


def wait_image_available(
    client: Any,
    ami_id: str,
    *,
    region: str,
    delay: float,
    attempts: int,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Wait for an image to become ``available``; fail at once on ``failed``/``error``/``invalid``/deregistration."""
    return wait_state(
        lambda: image_state(client, ami_id),
        resource=f"image {ami_id} in {region}",
        want="available",
        fail={"failed", "error", "invalid", "deregistered", "disabled", "gone"},
        delay=delay,
        attempts=attempts,
        sleep=sleep,
    )


def tcp_probe(timeout: float = 5.0) -> Callable[[BuilderHost], bool]:
    """A default SSH-readiness probe: True once the builder's SSH port accepts a TCP connection."""

    def probe(host: BuilderHost) -> bool:
        try:
            with socket.create_connection((host.address, host.port), timeout=timeout) as s:
                s.settimeout(timeout)
                return s.recv(4).startswith(b"SSH-")
        except OSError:
            return False

    return probe


def wait_ssh(
    host: BuilderHost,
    probe: Callable[[BuilderHost], bool],
    *,
    delay: float,
    attempts: int,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Probe until the builder answers SSH.

    Raises:
        WaitTimeout: it did not within ``attempts`` probes.
    """
    wait_state(
        lambda: ("ready", "") if probe(host) else ("not answering", f"{host.address}:{host.port}"),
        resource=f"SSH on builder {host.instance_id}",
        want="ready",
        delay=delay,
        attempts=attempts,
        sleep=sleep,
    )
