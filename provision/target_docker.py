"""DockerTarget: commands run in a container through the Docker SDK (``docker exec``)."""

from __future__ import annotations

import io
import posixpath
import secrets
import tarfile
import time
from typing import Any

from .exceptions import CommandFailed, ConnectError
from .target import Target, command_line, register


def docker_client() -> Any:
    """A Docker SDK client for the local engine, or ConnectError naming what to do."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=120)
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
        stdin_path = None
        if stdin is not None:
            stdin_path = f"/tmp/.coa-stdin-{secrets.token_hex(6)}"
            self._write(stdin_path, stdin)
            line = f"( {command} ) < {stdin_path}; rc=$?; rm -f {stdin_path}; exit $rc"
        if timeout is not None:
            line = command_line("timeout -k 5 %s sh -c %s", str(int(max(1, timeout))), line)
        c = self.container
        c.reload()
        if c.status != "running":
            raise ConnectError(f"Container {self.container_name!r} is {c.status}, not running", hint="start it with `invoke sim.up`")
        code, (out, err) = c.exec_run(["sh", "-c", line], demux=True)
        return code, out or b"", err or b""

    def _write(self, path: str, data: bytes) -> None:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(posixpath.basename(path))
            info.size = len(data)
            info.mode = 0o600
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
        if not self.container.put_archive(posixpath.dirname(path) or "/", buf.getvalue()):
            raise CommandFailed(self.name, f"write {path}", 1)

    def _read(self, path: str) -> bytes:
        from docker.errors import NotFound

        if not self.run("test -f %s", path, check=False).ok:
            raise FileNotFoundError(f"{self.name}:{path}")
        try:
            stream, _ = self.container.get_archive(path)
        except NotFound as e:
            raise FileNotFoundError(f"{self.name}:{path}") from e
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            assert member is not None
            f = tar.extractfile(member)
            assert f is not None
            return f.read()


@register("docker")
def _factory(spec: str, **options: Any) -> DockerTarget:
    name = spec.split("://", 1)[1].strip("/")
    if not name:
        from .exceptions import ConfigError

        raise ConfigError(f"Target {spec!r} names no container", hint="use docker://NAME")
    return DockerTarget(name, client=options.get("client"))
