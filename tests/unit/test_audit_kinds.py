"""The secrets audit over real files: every kind in every format is named, and the scan fails closed.

The scan runs for real (find, grep, awk, stat through LocalTarget) over temporary trees.
One planted example of each kind and format (``tests.plants``) is audited in one tree;
the report must name each at its path with exactly its kinds and never hold a secret.
Broken tools are real programs put first on PATH, not mocks of the audit.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from provision.exceptions import AuditFailed
from provision.image.audit import AuditReport, Finding, audit, require_clean
from provision.image.scan import scan_command
from provision.target.local import LocalTarget
from tests.plants import MARK, Plant, expected_path, pem, plants
from tests.unit.test_audit import WithoutPcre

ROOT = Path(__file__).resolve().parents[2]
PLANTS = plants()


def plant_all(root: Path, items: list[Plant]) -> None:
    """Write every plant under ``root``."""
    for p in items:
        full = root / p.path.lstrip("/")
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_bytes(p.content)
        full.chmod(p.mode)


def write(root: Path, path: str, content: str | bytes, mode: int = 0o644) -> str:
    """Write one file under ``root``; return its image path."""
    full = root / path.lstrip("/")
    full.parent.mkdir(parents=True, exist_ok=True)
    full.write_bytes(content.encode() if isinstance(content, str) else content)
    full.chmod(mode)
    return path


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("planted")
    plant_all(root, PLANTS)
    return root


@pytest.fixture(scope="module")
def report(planted: Path) -> AuditReport:
    return audit(LocalTarget(), root=str(planted))


@pytest.mark.parametrize("p", PLANTS, ids=[p.name for p in PLANTS])
def test_each_kind_and_format_is_named(report: AuditReport, p: Plant) -> None:
    assert report.kinds(expected_path(p)) == set(p.kinds), report.lines()


def test_nothing_else_is_found_and_no_secret_is_shown(report: AuditReport) -> None:
    paths = {expected_path(p) for p in PLANTS}
    assert {f.path for f in report.findings} == paths
    assert {k for p in PLANTS for k in p.kinds} >= {
        "private-key", "ssh-host-key", "authorized-keys", "shell-history", "cephx-keyring", "openstack-password",
        "openstack-secret", "password-hash", "client-credentials", "aws-credentials", "gcp-credentials",
        "azure-credentials", "service-database", "journal", "machine-id", "unscanned-archive", "build-secret", "world-readable-secret",
    }
    text = "\n".join(report.lines())
    assert MARK not in text and MARK.upper() not in text
    with pytest.raises(AuditFailed) as e:
        require_clean(report)
    assert MARK not in str(e.value)


def test_the_same_without_grep_p(planted: Path, report: AuditReport) -> None:
    fallback = audit(WithoutPcre(), root=str(planted))
    assert {(f.path, f.kind) for f in fallback.findings} == {(f.path, f.kind) for f in report.findings}


def test_a_secret_in_a_service_database_is_reported_as_the_database(tmp_path: Path) -> None:
    write(tmp_path, "/var/lib/mysql/keystone/credential.ibd", b"\x00\x01" + pem().encode(), 0o660)
    write(tmp_path, "/var/lib/mysql/ibdata1", b"\x00" * 64, 0o660)
    report = audit(LocalTarget(), root=str(tmp_path))
    assert [(f.path, f.kind) for f in report.findings] == [("/var/lib/mysql", "service-database")]
    assert "(2 files)" in report.findings[0].detail


def test_the_scan_skips_pseudo_file_systems_by_type() -> None:
    command = scan_command("/")
    for fstype in ("proc", "sysfs", "cgroup2", "devpts", "securityfs"):
        assert f"-fstype {fstype}" in command
    assert "-fstype tmpfs" not in command  # a tmpfs elsewhere than /run and /dev is scanned


def test_our_own_agent_code_is_clean(tmp_path: Path) -> None:
    """The boot agent is installed into the image: its source and bytecode must not look like secrets."""
    agent = tmp_path / "usr/lib/ceph-openstack-ami/provision"
    shutil.copytree(ROOT / "provision", agent, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(agent)], check=True, capture_output=True)
    report = audit(LocalTarget(), root=str(tmp_path))
    assert report.ok, report.lines()


# --- fails closed -----------------------------------------------------------------------
def test_a_file_over_the_read_bound_is_a_finding(tmp_path: Path) -> None:
    big = write(tmp_path, "/var/backups/dump.sql", "x" * 4096 + pem(), 0o600)
    small = write(tmp_path, "/var/backups/key.pem", pem(), 0o600)
    report = audit(LocalTarget(), root=str(tmp_path), max_bytes=2048)
    assert {(f.path, f.kind) for f in report.findings} == {(big, "unscanned-large-file"), (small, "private-key")}


@pytest.fixture
def open_tree() -> Iterator[Path]:
    """A temporary tree every user can enter (pytest's own tmp_path is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="coa-audit-test-"))
    path.chmod(0o755)
    yield path
    for p in path.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    shutil.rmtree(path)


class Unprivileged(LocalTarget):
    """Runs the scan as ``nobody`` when the tests run as root (root reads every file)."""

    def _exec(self, command: str, stdin: bytes | None, timeout: float | None) -> tuple[int, bytes, bytes]:
        argv = ["sh", "-c", command]
        if os.geteuid() == 0:
            argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
        p = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout)
        return p.returncode, p.stdout, p.stderr


@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None, reason="needs setpriv to drop root")
def test_an_unreadable_file_or_directory_is_a_finding(open_tree: Path) -> None:
    write(open_tree, "/etc/app/readable.conf", "x = 1\n", 0o644)
    locked = write(open_tree, "/etc/app/locked.conf", f"password = {MARK}\n", 0o000)
    write(open_tree, "/srv/private/inner.key", pem(), 0o644)
    (open_tree / "srv/private").chmod(0o000)
    report = audit(Unprivileged(), root=str(open_tree))
    assert {(f.path, f.kind) for f in report.findings} == {(locked, "unreadable"), ("/srv/private", "unreadable")}
    assert all("not scanned" in f.detail for f in report.findings)


def _broken_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, script: str) -> None:
    """Put a ``name`` that runs ``script`` first on PATH (the target's tools are this machine's)."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    tool = bindir / name
    tool.write_text("#!/bin/sh\n" + script + "\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")


@pytest.mark.parametrize(
    "tool, script, message",
    [
        ("grep", 'echo "grep: memory exhausted" >&2; exit 2', "memory exhausted"),
        ("find", f'{shutil.which("find")} "$@"; exit 3', "find exited 3"),
        ("stat", "printf 'garbage\\0'", "does not parse"),
        ("awk", 'echo "awk: line 1: syntax error" >&2; exit 2', "syntax error"),
    ],
)
def test_a_failing_tool_fails_the_audit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tool: str, script: str, message: str) -> None:
    root = tmp_path / "root"
    write(root, "/etc/shadow", "root:*:1::::::\n", 0o640)
    write(root, "/srv/x.pem", pem(), 0o600)
    _broken_tool(tmp_path, monkeypatch, tool, script)
    with pytest.raises(AuditFailed, match=message):
        audit(LocalTarget(), root=str(root))


def test_a_scan_cut_short_fails_the_audit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = set(Path("/dev/shm").glob("coa-audit.*"))
    _broken_tool(tmp_path, monkeypatch, "find", "sleep 2")
    with pytest.raises(AuditFailed, match="did not run cleanly"):
        audit(LocalTarget(), root=str(tmp_path / "root"), timeout=0.5)
    time.sleep(2)  # the killed scan's orphan ends; its temporary directory (no EXIT trap on SIGKILL) is ours to remove
    for leftover in set(Path("/dev/shm").glob("coa-audit.*")) - before:
        shutil.rmtree(leftover, ignore_errors=True)


# --- what may be let through, and only that ----------------------------------------------
def _dpkg(root: Path, package: str, files: dict[str, bytes], conffiles: dict[str, bytes] | None = None) -> None:
    """Register ``package`` as installed, shipping ``files`` (image path -> bytes) and ``conffiles``."""
    lines = "".join(f"{hashlib.md5(data).hexdigest()}  {path.lstrip('/')}\n" for path, data in files.items())
    write(root, f"/var/lib/dpkg/info/{package}.md5sums", lines)
    status = f"Package: {package}\nStatus: install ok installed\n"
    if conffiles:
        status += "Conffiles:\n" + "".join(f" {p} {hashlib.md5(d).hexdigest()}\n" for p, d in conffiles.items())
    status_file = root / "var/lib/dpkg/status"
    write(root, "/var/lib/dpkg/status", (status_file.read_text() if status_file.exists() else "") + status + "\n")


def _allowed(report: AuditReport) -> dict[tuple[str, str], str]:
    return {(f.path, f.kind): f.detail for f in report.allowed}


def test_packaged_files_their_copies_conffiles_and_merged_usr(tmp_path: Path) -> None:
    js = f"form.password = '{MARK}';\n".encode()
    key = pem().encode()
    conf = f"[auth]\npassword = {MARK}\n".encode()
    _dpkg(tmp_path, "web-ui", {"/usr/share/web-ui/form.js": js, "/usr/share/web-ui/test.key": key, "/bin/tool": key},
          conffiles={"/etc/web-ui/web.conf": conf})
    write(tmp_path, "/usr/share/web-ui/form.js", js)
    write(tmp_path, "/var/lib/web-ui/static/form.js", js)  # collected static files: the same bytes elsewhere
    write(tmp_path, "/usr/share/web-ui/test.key", key)
    copied_key = write(tmp_path, "/etc/web-ui/server.key", key, 0o600)  # a published key put to use
    write(tmp_path, "/etc/web-ui/web.conf", conf, 0o640)
    (tmp_path / "bin").symlink_to("usr/bin")  # merged /usr: dpkg lists bin/tool, the file is usr/bin/tool
    write(tmp_path, "/usr/bin/tool", key, 0o755)
    changed = write(tmp_path, "/usr/share/web-ui/changed.js", js + b"//\n")
    report = audit(LocalTarget(), root=str(tmp_path))
    assert {(f.path, f.kind) for f in report.findings} == {(copied_key, "private-key"), (changed, "openstack-password"),
                                                           (changed, "world-readable-secret")}
    allowed = _allowed(report)
    assert "shipped unmodified by package web-ui" in allowed[("/usr/share/web-ui/form.js", "openstack-password")]
    assert "same bytes as /usr/share/web-ui/form.js" in allowed[("/var/lib/web-ui/static/form.js", "openstack-password")]
    assert "web-ui" in allowed[("/etc/web-ui/web.conf", "openstack-password")]
    assert "web-ui" in allowed[("/usr/bin/tool", "private-key")]
    assert ("/usr/bin/tool", "world-readable-secret") in allowed


def _pyc(source: bytes, recorded_size: int) -> bytes:
    """A timestamp-based .pyc header recording ``recorded_size``, then the constants' bytes."""
    return b"\xa7\x0d\x0d\x0a" + b"\x00" * 8 + recorded_size.to_bytes(4, "little") + source


def test_bytecode_of_a_packaged_source(tmp_path: Path) -> None:
    src = f'TEST_KEY = """{pem()}"""\n'.encode()
    _dpkg(tmp_path, "python3-lib", {"/usr/lib/python3/dist-packages/lib/fixtures.py": src})
    write(tmp_path, "/usr/lib/python3/dist-packages/lib/fixtures.py", src)
    ok = write(tmp_path, "/usr/lib/python3/dist-packages/lib/__pycache__/fixtures.cpython-311.pyc", _pyc(src, len(src)))
    stale = write(tmp_path, "/usr/lib/python3/dist-packages/lib/__pycache__/fixtures.cpython-312.pyc", _pyc(src, len(src) + 1))
    report = audit(LocalTarget(), root=str(tmp_path))
    assert {f.path for f in report.findings} == {stale}
    assert "compiled from /usr/lib/python3/dist-packages/lib/fixtures.py" in _allowed(report)[(ok, "private-key")]


def test_known_binary_types_over_the_bound(tmp_path: Path) -> None:
    bound = 4096
    block = write(tmp_path, "/var/lib/ceph/osd/ceph-0/block", b"bluestore block device\n" + b"\x00" * bound, 0o600)
    fake_block = write(tmp_path, "/var/lib/ceph/osd/ceph-1/block", b"\x00" * (bound + 1), 0o600)
    hwdb = write(tmp_path, "/usr/lib/udev/hwdb.bin", b"KSLPHHRH" + b"\x00" * bound)
    initrd_data = b"\x28\xb5\x2f\xfd" + os.urandom(bound)
    initrd = write(tmp_path, "/boot/initrd.img-6.1.0-cloud-amd64", initrd_data, 0o600)
    write(tmp_path, "/var/lib/initramfs-tools/6.1.0-cloud-amd64", hashlib.sha1(initrd_data).hexdigest() + "  /boot/initrd.img-6.1.0-cloud-amd64\n")
    other_initrd = write(tmp_path, "/boot/initrd.img-6.2", initrd_data, 0o600)  # no recorded sha1
    snap = write(tmp_path, "/var/lib/snapd/snaps/core22_1380.snap", b"hsqs" + b"\x00" * bound)
    report = audit(LocalTarget(), root=str(tmp_path), max_bytes=bound)
    assert {(f.path, f.kind) for f in report.findings} == {(fake_block, "unscanned-large-file"), (other_initrd, "unscanned-large-file")}
    allowed = _allowed(report)
    assert "BlueStore" in allowed[(block, "unscanned-large-file")]
    assert "hardware database" in allowed[(hwdb, "unscanned-large-file")]
    assert "initramfs" in allowed[(initrd, "unscanned-large-file")]
    assert "snap package" in allowed[(snap, "unscanned-large-file")]


def test_compressed_files_are_findings_unless_packaged_or_not_compressed(tmp_path: Path) -> None:
    doc = gzip.compress(b"changelog\n", mtime=0)
    _dpkg(tmp_path, "docs", {"/usr/share/doc/docs/changelog.Debian.gz": doc})
    write(tmp_path, "/usr/share/doc/docs/changelog.Debian.gz", doc)
    backup = write(tmp_path, "/root/keys.tar.xz", lzma.compress(pem().encode()), 0o600)
    write(tmp_path, "/var/lib/dpkg/alternatives/psql.1.gz", "manual\n/usr/share/man/man1/psql.1.gz\n")  # a name, not gzip
    plain = write(tmp_path, "/var/lib/dpkg/alternatives/app.1.gz", f"password = {MARK}\n", 0o600)  # read as it is
    report = audit(LocalTarget(), root=str(tmp_path))
    assert {(f.path, f.kind) for f in report.findings} == {(backup, "unscanned-archive"), (plain, "openstack-password")}
    allowed = _allowed(report)
    assert "docs" in allowed[("/usr/share/doc/docs/changelog.Debian.gz", "unscanned-archive")]
    assert "not compressed" in allowed[(plain, "unscanned-archive")]


def test_maintainer_scripts_of_installed_packages(tmp_path: Path) -> None:
    script = f"#!/bin/sh\necho 'rabbit://guest:{MARK}@localhost'\n"
    _dpkg(tmp_path, "nova-common", {})
    write(tmp_path, "/var/lib/dpkg/info/nova-common.postinst", script, 0o755)
    orphan = write(tmp_path, "/var/lib/dpkg/info/gone.postinst", script, 0o755)
    report = audit(LocalTarget(), root=str(tmp_path))
    assert {f.path for f in report.findings} == {orphan}
    assert ("/var/lib/dpkg/info/nova-common.postinst", "openstack-password") in _allowed(report)


def test_allowed_findings_are_summarised_in_the_report() -> None:
    allowed = [Finding(f"/usr/share/p/{i}.js", "openstack-password", "shipped unmodified by package p (dpkg md5sum)", "content") for i in range(5)]
    allowed.append(Finding("/var/lib/ceph/osd/ceph-0/keyring", "cephx-keyring", "allowed by 'cephx-keyring:/var/lib/ceph/osd/*/keyring'"))
    lines = AuditReport("local", allowed=allowed).lines()
    assert any(line.strip().startswith("5 finding(s) in files shipped unmodified by Debian packages") for line in lines)
    assert any("/var/lib/ceph/osd/ceph-0/keyring" in line for line in lines)


@pytest.mark.parametrize(
    "line, hit",
    [
        ("passwd:         files systemd", False),  # nsswitch.conf's database, not a password
        ("'password' => $smtp_authpass,", False),  # code
        ("if password == other:", False),
        ("password=${RET}", False),  # a shell reference in a package's scripts
        ("dbc_dbpass=''", False),
        ("passwd=hunter2", True),
        ("password: hunter2", True),
        ("DB_PASSWORD=hunter2", True),
        ("  'password': 'hunter2'", True),
    ],
)
def test_password_option_in_any_file(tmp_path: Path, line: str, hit: bool) -> None:
    path = write(tmp_path, "/usr/local/etc/app/app.conf", line + "\n", 0o600)
    assert {(f.path, f.kind) for f in audit(LocalTarget(), root=str(tmp_path)).findings} == ({(path, "openstack-password")} if hit else set())
