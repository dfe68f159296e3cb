"""SSHTarget: commands run on a remote host over SSH (paramiko).

Connects lazily on first use, with a connect timeout and bounded retries while a
fresh host is still booting. The host-key policy is explicit:

* ``reject`` — the host key must already be in ``known_hosts``;
* ``accept-new`` (default) — trust on first use, then pin: a key that later
  differs for the same host is refused (saved to ``known_hosts`` when given);
* ``pinned`` — compare to the expected key given as ``host_key`` (``type base64``),
  e.g. read from the EC2 console output.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Callable
from urllib.parse import urlsplit

from ..exceptions import ConfigError, ConnectError
from .base import Target, command_line

HOST_KEY_POLICIES = ("reject", "accept-new", "pinned")


class SSHTarget(Target):
    """A host reached over SSH; commands run through ``sudo -n`` unless the user is root."""

    def __init__(
        self,
        host: str,
        user: str = "root",
        port: int = 22,
        key_filename: str | None = None,
        pkey: Any = None,
        host_key_policy: str = "accept-new",
        known_hosts: str | None = None,
        host_key: str | None = None,
        connect_timeout: float = 10.0,
        retries: int = 1,
        retry_delay: float = 5.0,
        sudo: bool | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if host_key_policy not in HOST_KEY_POLICIES:
            raise ConfigError(f"Unknown host-key policy {host_key_policy!r}", hint=f"use one of {', '.join(HOST_KEY_POLICIES)}")
        if host_key_policy == "pinned" and not host_key:
            raise ConfigError("Host-key policy 'pinned' needs the expected host_key ('TYPE BASE64')")
        if key_filename and not os.path.isfile(os.path.expanduser(key_filename)):
            raise ConfigError(f"SSH key file {key_filename!r} does not exist", hint="pass --key with the private key that matches the instance's key pair")
        self.host, self.user, self.port = host, user, port
        self.name = f"ssh://{user}@{host}:{port}"
        self.key_filename = os.path.expanduser(key_filename) if key_filename else None
        self.pkey = pkey
        self.host_key_policy = host_key_policy
        self.known_hosts = known_hosts
        self.host_key = host_key
        self.connect_timeout = connect_timeout
        self.retries = max(1, retries)
        self.retry_delay = retry_delay
        self.sudo = (user != "root") if sudo is None else sudo
        self.log = log or (lambda _msg: None)
        self._client: Any = None
        self._pinned: Any = None  # first-seen key for accept-new without a file

    # --- connection -------------------------------------------------------------
    def _policy(self) -> Any:
        import paramiko

        target = self

        class _Policy(paramiko.MissingHostKeyPolicy):
            def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
                if target.host_key_policy == "reject":
                    raise paramiko.SSHException(f"host key for {hostname} is not in known_hosts (policy 'reject')")
                if target.host_key_policy == "pinned":
                    expected = (target.host_key or "").split()
                    if [key.get_name(), key.get_base64()] != expected[:2]:
                        raise paramiko.BadHostKeyException(hostname, key, key)
                    return
                if target._pinned is not None and target._pinned.asbytes() != key.asbytes():
                    raise paramiko.BadHostKeyException(hostname, key, target._pinned)
                target._pinned = key
                client.get_host_keys().add(hostname, key.get_name(), key)
                if target.known_hosts:
                    client.save_host_keys(target.known_hosts)

        return _Policy()

    def connect(self) -> Any:
        """Open the SSH connection (retrying while the host boots) and return the paramiko client."""
        import paramiko

        if self._client is not None and self._client.get_transport() and self._client.get_transport().is_active():
            return self._client
        last: Exception | None = None
        for attempt in range(1, self.retries + 1):
            client = paramiko.SSHClient()
            if self.known_hosts and os.path.exists(self.known_hosts):
                client.load_host_keys(self.known_hosts)
            client.set_missing_host_key_policy(self._policy())
            try:
                client.connect(
                    self.host,
                    port=self.port,
                    username=self.user,
                    key_filename=self.key_filename,
                    pkey=self.pkey,
                    timeout=self.connect_timeout,
                    banner_timeout=self.connect_timeout,
                    auth_timeout=self.connect_timeout,
                    allow_agent=self.key_filename is None and self.pkey is None,
                    look_for_keys=False,
                )
                self._client = client
                return client
            except paramiko.BadHostKeyException as e:
                client.close()
                raise ConnectError(
                    f"Host key of {self.host} does not match the expected one",
                    hint="if the host was rebuilt, remove its old key from known_hosts; otherwise do not connect",
                ) from e
            except (OSError, socket.timeout, paramiko.SSHException, EOFError) as e:
                client.close()
                last = e
                if attempt < self.retries:
                    self.log(f"ssh {self.host}:{self.port}: {e.__class__.__name__}: {e}; retry {attempt}/{self.retries - 1} in {self.retry_delay:.0f}s")
                    time.sleep(self.retry_delay)
        raise ConnectError(
            f"Cannot reach {self.name} after {self.retries} attempt(s): {last.__class__.__name__}: {last}",
            hint="check the address, that port 22 is open to you, and the key (--key)",
        ) from last

    def server_key(self) -> str:
        """The host key the server answered with, as ``TYPE BASE64`` (connecting first when needed)."""
        key = self.connect().get_transport().get_remote_server_key()
        return f"{key.get_name()} {key.get_base64()}"

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # --- primitives -------------------------------------------------------------
    def _exec(self, command: str, stdin: bytes | None, timeout: float | None) -> tuple[int, bytes, bytes]:
        line = command_line("sudo -n sh -c %s", command) if self.sudo else command
        if timeout is not None:
            line = command_line("timeout -k 5 %s sh -c %s", str(int(max(1, timeout))), line)
        transport = self.connect().get_transport()
        chan = transport.open_session(timeout=self.connect_timeout)
        chan.exec_command(line)
        if stdin is not None:
            chan.sendall(stdin)
        chan.shutdown_write()
        out, err = bytearray(), bytearray()
        while True:
            if chan.recv_ready():
                out += chan.recv(65536)
            elif chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            elif chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                break
            else:
                time.sleep(0.005)
        code = chan.recv_exit_status()
        while chan.recv_ready():
            out += chan.recv(65536)
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
        chan.close()
        return code, bytes(out), bytes(err)


def from_spec(spec: str, **options: Any) -> SSHTarget:
    """An SSHTarget from ``ssh://USER@HOST[:PORT]``; options go to :class:`SSHTarget`."""
    parts = urlsplit(spec)
    if not parts.hostname:
        raise ConfigError(f"Target {spec!r} names no host", hint="use ssh://USER@HOST[:PORT]")
    try:
        port = parts.port or options.pop("port", 22)
    except ValueError as e:
        raise ConfigError(f"Target {spec!r} has an invalid port") from e
    options.pop("port", None)
    return SSHTarget(parts.hostname, user=parts.username or options.pop("user", "root"), port=port, **options)
