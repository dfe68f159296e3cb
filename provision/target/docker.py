"""DockerTarget: commands run in a container through the Docker SDK (``docker exec``)."""

from __future__ import annotations

import socket
from typing import Any

from ..exceptions import ConfigError, ConnectError
from .base import Target, command_line


def docker_client(timeout: int = 120) -> Any:
    """A Docker SDK client for the local engine (each API call bounded by ``timeout`` seconds), or ConnectError naming what to do."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except DockerException as e:
        raise ConnectError(
            f"No Docker engine answers ({e.__class__.__name__})",
            hint="start the Docker daemon (systemctl start docker) or set DOCKER_HOST",
        ) from e
    return client


class DockerTarget(Target):
    """Run commands in a running container, by name or id."""

    def __init__(self, container: str, client: Any = None) -> None:
        self.container_name = container
        self.name = f"docker://{container}"
        self._client = client
        self._container: Any = None

    @property
    def container(self) -> Any:
        """The docker SDK container object, looked up lazily."""
        if self._container is None:
            from docker.errors import NotFound

            client = self._client or docker_client()
            try:
                self._container = client.containers.get(self.container_name)
            except NotFound as e:
                raise ConnectError(
                    f"No container named {self.container_name!r}",
                    hint="check `docker ps`, or start the simulation with `invoke sim.up`",
                ) from e
        return self._container

    def _exec(self, command: str, stdin: bytes | None, timeout: float | None) -> tuple[int, bytes, bytes]:
        line = command
        if timeout is not None:
            line = command_line("timeout -k 5 %s sh -c %s", str(int(max(1, timeout))), line)
        c = self.container
        c.reload()
        if c.status != "running":
            raise ConnectError(f"Container {self.container_name!r} is {c.status}, not running", hint="start it with `invoke sim.up`")
        if stdin is None:
            code, (out, err) = c.exec_run(["sh", "-c", line], demux=True)
            return code, out or b"", err or b""
        return self._exec_with_stdin(c, line, stdin)

    def _exec_with_stdin(self, c: Any, line: str, stdin: bytes) -> tuple[int, bytes, bytes]:
        """``docker exec -i``: feed stdin over the hijacked socket, then half-close it."""
        from docker.utils.socket import consume_socket_output, demux_adaptor, frames_iter

        api = c.client.api
        exec_id = api.exec_create(c.id, ["sh", "-c", line], stdin=True, stdout=True, stderr=True)["Id"]
        sock = api.exec_start(exec_id, socket=True)
        raw = getattr(sock, "_sock", sock)
        try:
            raw.sendall(stdin)
            raw.shutdown(socket.SHUT_WR)
            frames = frames_iter(sock, tty=False)
            out, err = consume_socket_output((demux_adaptor(*f) for f in frames), demux=True)
        finally:
            sock.close()
        code = api.exec_inspect(exec_id)["ExitCode"]
        return int(code if code is not None else 255), out or b"", err or b""


def from_spec(spec: str, **options: Any) -> DockerTarget:
    """A DockerTarget from ``docker://NAME`` (option ``client``: a Docker SDK client)."""
    name = spec.split("://", 1)[1].strip("/")
    if not name:
        raise ConfigError(f"Target {spec!r} names no container", hint="use docker://NAME")
    return DockerTarget(name, client=options.get("client"))
