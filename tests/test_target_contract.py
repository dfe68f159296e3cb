"""One contract for every Target backend: local, docker (SDK) and ssh (paramiko into a container)."""

from __future__ import annotations

import os
from typing import Any, Iterator

import pytest

from provision.exceptions import CommandFailed, ConfigError, ConnectError
from provision.target import Target, from_spec

BACKENDS = ["local", pytest.param("docker", marks=pytest.mark.docker), pytest.param("ssh", marks=pytest.mark.docker)]


@pytest.fixture(params=BACKENDS)
def target(request: Any, tmp_path: Any) -> Iterator[tuple[Target, str]]:
    """(target, a scratch directory on it)."""
    if request.param == "local":
        yield from_spec("local"), str(tmp_path)
        return
    container = request.getfixturevalue("systemd_container")
    if request.param == "docker":
        t = from_spec(f"docker://{container.name}")
        t.run("mkdir -p /srv/contract")
        yield t, "/srv/contract"
        return
    import paramiko

    key = paramiko.Ed25519Key.generate() if hasattr(paramiko.Ed25519Key, "generate") else None
    if key is None:  # paramiko cannot generate ed25519: use RSA
        key = paramiko.RSAKey.generate(2048)
    d = from_spec(f"docker://{container.name}")
    d.run("useradd -m -s /bin/bash tester 2>/dev/null || true; echo 'tester ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/tester")
    d.put("/home/tester/.ssh/authorized_keys", f"{key.get_name()} {key.get_base64()}\n", mode=0o600, owner="tester")
    d.run("chown tester:tester /home/tester/.ssh && chmod 700 /home/tester/.ssh")
    container.reload()
    ip = container.attrs["NetworkSettings"]["IPAddress"]
    t = from_spec(f"ssh://tester@{ip}:22", pkey=key, retries=10, retry_delay=1)
    t.run("mkdir -p /srv/contract")
    yield t, "/srv/contract"
    t.close()


def test_run_returns_result(target: tuple[Target, str]) -> None:
    t, _ = target
    r = t.run("echo %s; echo err >&2", "hello world")
    assert r.ok and r.stdout == "hello world\n" and r.stderr == "err\n"


def test_run_quotes_arguments_once(target: tuple[Target, str]) -> None:
    t, _ = target
    nasty = "a'b \"c\" $(rm -rf /) ; `x`"
    assert t.run(["printf", "%s", nasty]).stdout == nasty
    assert t.run("printf %%s %s", nasty).stdout == nasty


def test_failed_command_raises_with_context(target: tuple[Target, str]) -> None:
    t, _ = target
    with pytest.raises(CommandFailed) as e:
        t.run("echo boom >&2; exit 3")
    assert e.value.exit_code == 3 and "boom" in str(e.value) and t.name in str(e.value)
    assert t.run("exit 3", check=False).exit_code == 3


def test_stdin_and_timeout(target: tuple[Target, str]) -> None:
    t, _ = target
    assert t.run("tr a-z A-Z", stdin="abc").stdout == "ABC"
    r = t.run("sleep 30", check=False, timeout=1)
    assert r.exit_code == 124


def test_put_is_idempotent_atomic_and_sets_mode(target: tuple[Target, str]) -> None:
    t, d = target
    path = f"{d}/sub/dir/file.conf"
    assert t.put(path, "one\n", mode=0o640) is True
    assert t.put(path, "one\n", mode=0o640) is False  # unchanged content: not rewritten
    inode = t.run("stat -c %%i %s", path).stdout
    assert t.put(path, "one\n", mode=0o640) is False and t.run("stat -c %%i %s", path).stdout == inode
    assert t.put(path, "one\n", mode=0o600) is True  # mode only
    assert t.run("stat -c %%a %s", path).stdout.strip() == "600"
    assert t.put(path, b"two\x00\xff", mode=0o600) is True
    assert t.read(path) == b"two\x00\xff"
    leftovers = t.run("ls -A %s", f"{d}/sub/dir").stdout.split()
    assert leftovers == ["file.conf"]  # no temporary file left behind


def test_put_sets_owner(target: tuple[Target, str]) -> None:
    t, d = target
    if t.run("id -u").stdout.strip() != "0" and not t.name.startswith("ssh"):
        pytest.fail("the contract suite runs as root (CI does)")
    path = f"{d}/owned"
    assert t.put(path, "x", mode=0o640, owner="root", group="nogroup") is True
    assert t.run("stat -c '%%U:%%G' %s", path).stdout.strip() == "root:nogroup"
    assert t.put(path, "x", mode=0o640, owner="root", group="nogroup") is False


def test_read_missing_raises(target: tuple[Target, str]) -> None:
    t, d = target
    with pytest.raises(FileNotFoundError):
        t.read(f"{d}/does-not-exist")
    assert not t.exists(f"{d}/does-not-exist")


def test_large_file_roundtrip(target: tuple[Target, str]) -> None:
    t, d = target
    data = os.urandom(3 * 1024 * 1024)
    assert t.put(f"{d}/big", data)
    assert t.read(f"{d}/big") == data
    assert t.sha256(f"{d}/big") == __import__("hashlib").sha256(data).hexdigest()


def test_unknown_scheme_is_named() -> None:
    with pytest.raises(ConfigError) as e:
        from_spec("telnet://host")
    assert "docker://NAME" in str(e.value) and "ssh://" in str(e.value)


def test_missing_key_file_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        from_spec("ssh://admin@127.0.0.1:22", key_filename="/nonexistent/key.pem")


def test_unreachable_ssh_host_fails_within_bound() -> None:
    import time

    t = from_spec("ssh://admin@127.0.0.1:1", connect_timeout=1, retries=2, retry_delay=0.1)
    start = time.monotonic()
    with pytest.raises(ConnectError, match="after 2 attempt"):
        t.run("true")
    assert time.monotonic() - start < 10


@pytest.mark.docker
def test_missing_container_is_clear(docker_client: Any) -> None:
    with pytest.raises(ConnectError, match="No container named"):
        from_spec("docker://coa-no-such-container").run("true")
