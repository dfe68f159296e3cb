"""The instance's console: where the owner reads what was made for this instance (``get-console-output``).

A line with a secret (the admin password) is written to the console device only, never to stdout,
so it does not reach the journal or any log file: on EC2 the console is the instance's serial
console, which only the account that owns the instance can read through the EC2 API.
"""

from __future__ import annotations

import os

from .steps import Log

CONSOLE = "/dev/console"


def to_console(line: str, instead: str, log: Log, device: str = CONSOLE) -> bool:
    """Write ``line`` to the console device; when there is none, ``log`` the ``instead`` line (no secret).

    Returns:
        True when the line reached the console.
    """
    try:
        fd = os.open(device, os.O_WRONLY | os.O_NOCTTY | os.O_APPEND)
    except OSError as e:
        log(f"{instead} (no console to write to: {e.strerror})")
        return False
    try:
        os.write(fd, (line.rstrip("\n") + "\r\n").encode())
    finally:
        os.close(fd)
    return True

