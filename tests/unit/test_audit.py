"""Secrets audit, offline: parsers and classifiers as tables, the scanner over a temp tree.

Secret-looking test data is assembled at run time (``_pem``, ``_akia``) so that no file
of this repository looks like it holds a real key.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from provision.exceptions import AuditFailed
from provision.image import patterns as patterns_mod
from provision.image.audit import (
    CLUSTER_KEYRINGS,
    AuditReport,
    Finding,
    ScanOutput,
    ScanRecord,
    allow_match,
    audit,
    findings_from_scan,
    parse_errors,
    parse_packaged,
    parse_scan,
    require_clean,
)
from provision.image.patterns import BUILD_SECRETS, build_secrets, name_kind
from provision.settings import Settings
from provision.target.local import LocalTarget

B64 = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun"
SECRET_VALUE = "hunter2-do-not-print"


def _pem(kind: str = "RSA ", body: str = B64, sep: str = "\n") -> str:
    """A PEM-shaped private key (fake), built at run time."""
    return "-----BEGIN " + kind + "PRIVATE" + " KEY-----" + sep + body + sep + "-----END " + kind + "PRIVATE KEY-----" + sep


def _akia(tail: str = "Q7RZ4XN2KD5MWPLT") -> str:
    return "AKI" + "A" + tail


AWS_SECRET = "Zx9" + "f3kLmN0pQrStUvWxYz0123456789abcdEFGHi"  # 40 characters


def plant(root: Path, path: str, content: str | bytes = "", mode: int = 0o600) -> str:
    """Write ``content`` at ``path`` under ``root``; return ``path``."""
    full = root / path.lstrip("/")
    full.parent.mkdir(parents=True, exist_ok=True)
    full.write_bytes(content.encode() if isinstance(content, str) else content)
    full.chmod(mode)
    return path


def found(root: Path, **kwargs: object) -> set[tuple[str, str]]:
    """(path, kind) of every finding of an audit of ``root``."""
    report = audit(LocalTarget(), root=str(root), **kwargs)  # type: ignore[arg-type]
    return {(f.path, f.kind) for f in report.findings}


# --- pure: classification by name ---------------------------------------------------
@pytest.mark.parametrize(
    "path, kind",
    [
        ("/etc/ssh/ssh_host_ed25519_key", "ssh-host-key"),
        ("/etc/ssh/ssh_host_rsa_key.pub", "ssh-host-key"),
        ("/etc/ssh/ssh_config", None),
        ("/root/.ssh/authorized_keys", "authorized-keys"),
        ("/home/admin/.ssh/authorized_keys2", "authorized-keys"),
        ("/root/.bash_history", "shell-history"),
        ("/var/lib/postgresql/.psql_history", "shell-history"),
        ("/home/admin/.viminfo", "shell-history"),
        ("/home/admin/.aws/credentials", "aws-credentials"),
        ("/home/admin/.aws/config", None),
        ("/etc/machine-id", "machine-id"),
        ("/var/lib/dbus/machine-id", "machine-id"),
        ("/etc/ceph/ceph.client.images.keyring", None),  # rotated at first boot: found by content
        ("/etc/ceph/ceph.conf", None),
        ("/root/openrc", "build-secret"),
        ("/var/lib/ceph-openstack-ami/secrets/admin-password", "build-secret"),
        ("/var/lib/ceph-openstack-ami/state.json", None),
        ("/var/lib/ceph-openstack-ami/openstack/secrets.json", "build-secret"),
        ("/var/lib/ceph-openstack-ami/openstack/secrets.pending.json", "build-secret"),
        ("/etc/keystone/fernet-keys/0", "build-secret"),
        ("/etc/keystone/credential-keys/1", "build-secret"),
        ("/etc/libvirt/secrets/457eb676-33da-42ec-9a8c-9293d545c337.base64", "build-secret"),
        ("/etc/libvirt/secrets/457eb676-33da-42ec-9a8c-9293d545c337.xml", None),
        ("/etc/keystone/keystone.conf", None),
    ],
)
def test_name_kind(path: str, kind: str | None) -> None:
    assert name_kind(path) == kind


def test_build_secrets_follow_cluster_and_state_dir() -> None:
    globs = build_secrets(Settings().replace(state_dir="/srv/coa"))
    assert set(BUILD_SECRETS) <= set(globs)
    assert "/srv/coa/secrets/*" in globs and "/srv/coa/openstack/secrets*.json" in globs
    assert build_secrets(Settings()) == BUILD_SECRETS  # defaults add nothing new


# --- pure: parsing the scanner's output ---------------------------------------------
def test_parse_scan_sections_records_and_root_prefix() -> None:
    out = (
        "@@uid\x000\x00@@names\x00"
        "600\t12\t/r/root/.bash_history\x00644\t0\t/r/etc/machine-id\x00"
        "@@private-key\x00600\t400\t/r/opt/x/key.pem\x00"
        "@@cephx\x00@@machine-id-uninitialized\x00@@end\x00"
    )
    scan = parse_scan(out, "/r")
    assert scan.uid == "0" and scan.complete and not scan.machine_id_uninitialized
    assert scan.records == [
        ScanRecord("names", "/root/.bash_history", 0o600, 12),
        ScanRecord("names", "/etc/machine-id", 0o644, 0),
        ScanRecord("private-key", "/opt/x/key.pem", 0o600, 400),
    ]
    assert not parse_scan("@@uid\x000\x00@@names\x00").complete  # cut short


REC = ScanRecord


@pytest.mark.parametrize(
    "records, expected",
    [
        ([], set()),
        # empty by-name files are harmless, except host keys
        ([REC("names", "/root/.bash_history", 0o600, 0)], set()),
        ([REC("names", "/root/.ssh/authorized_keys", 0o600, 0)], set()),
        ([REC("names", "/etc/machine-id", 0o444, 0)], set()),
        ([REC("names", "/etc/machine-id", 0o444, 33)], {("/etc/machine-id", "machine-id")}),
        # a host key is reported once, as ssh-host-key, even though it is a private key
        (
            [REC("names", "/etc/ssh/ssh_host_rsa_key", 0o600, 2600), REC("private-key", "/etc/ssh/ssh_host_rsa_key", 0o600, 2600)],
            {("/etc/ssh/ssh_host_rsa_key", "ssh-host-key")},
        ),
        # a public host key readable by all is normal; a private one is not
        ([REC("names", "/etc/ssh/ssh_host_rsa_key.pub", 0o644, 500)], {("/etc/ssh/ssh_host_rsa_key.pub", "ssh-host-key")}),
        (
            [REC("names", "/etc/ssh/ssh_host_rsa_key", 0o644, 2600)],
            {("/etc/ssh/ssh_host_rsa_key", "ssh-host-key"), ("/etc/ssh/ssh_host_rsa_key", "world-readable-secret")},
        ),
        # build-secret only when nothing more specific applies
        (
            [REC("names", "/root/openrc", 0o600, 60), REC("os-option", "/root/openrc", 0o600, 60)],
            {("/root/openrc", "openstack-password")},
        ),
        ([REC("names", "/root/openrc", 0o600, 60)], {("/root/openrc", "build-secret")}),
        # world-readable: secret-bearing kinds only (a history is not)
        (
            [REC("os-option", "/root/openrc", 0o644, 60), REC("names", "/root/openrc", 0o644, 60)],
            {("/root/openrc", "openstack-password"), ("/root/openrc", "world-readable-secret")},
        ),
        ([REC("names", "/root/.bash_history", 0o644, 10)], {("/root/.bash_history", "shell-history")}),
        ([REC("aws-key-id", "/etc/x.env", 0o640, 10)], {("/etc/x.env", "aws-credentials")}),
        ([REC("os-url", "/etc/nova/nova.conf", 0o640, 10)], {("/etc/nova/nova.conf", "openstack-password")}),
    ],
)
def test_findings_from_scan(records: list[ScanRecord], expected: set[tuple[str, str]]) -> None:
    findings = findings_from_scan(ScanOutput(records=records, uid="0", complete=True))
    assert {(f.path, f.kind) for f in findings} == expected


def test_findings_merge_details_and_flag_non_root_scan() -> None:
    scan = ScanOutput(
        records=[REC("os-option", "/etc/glance/g.conf", 0o640, 9), REC("os-url", "/etc/glance/g.conf", 0o640, 9)], uid="1000"
    )
    findings = findings_from_scan(scan, "/")
    assert [f.kind for f in findings] == ["unreadable", "openstack-password"]
    assert findings[1].detail == "password option with a value; URL with a user:password@"
    assert findings_from_scan(ScanOutput(uid="1000"), "/tmp/tree") == []  # a test tree needs no root


def test_uninitialized_machine_id_is_clean() -> None:
    scan = ScanOutput(records=[REC("names", "/etc/machine-id", 0o444, 14)], machine_id_uninitialized=True)
    assert findings_from_scan(scan) == []


@pytest.mark.parametrize(
    "line, unreadable, other",
    [
        ("find: '/r/root/x': Permission denied", "/root/x", None),
        ("find: ‘/r/root/x’: Permission denied", "/root/x", None),
        ("grep: /r/etc/shadow: Permission denied", "/etc/shadow", None),
        ("find: '/r/srv': No such file or directory", None, None),
        ("find: unknown predicate `-printf'", None, "find: unknown predicate `-printf'"),
    ],
)
def test_parse_errors(line: str, unreadable: str | None, other: str | None) -> None:
    found_, others = parse_errors(line + "\n", "/r")
    assert [f.path for f in found_] == ([unreadable] if unreadable else [])
    assert others == ([other] if other else [])


def test_parse_packaged() -> None:
    out = (
        "var/lib/dpkg/info/python3-foo.md5sums:0123  usr/lib/python3/dist-packages/foo/tests/key.pem\n"
        "var/lib/dpkg/info/libbar1:amd64.md5sums:4567  usr/share/bar/test.key\n"
        "garbage\n"
    )
    assert parse_packaged(out) == {
        "/usr/lib/python3/dist-packages/foo/tests/key.pem": "python3-foo",
        "/usr/share/bar/test.key": "libbar1",
    }


@pytest.mark.parametrize(
    "finding, allow, entry",
    [
        (Finding("/var/lib/ceph/osd/ceph-0/keyring", "cephx-keyring"), CLUSTER_KEYRINGS, "cephx-keyring:/var/lib/ceph/osd/*/keyring"),
        (Finding("/var/lib/ceph/osd/ceph-0/keyring", "world-readable-secret"), CLUSTER_KEYRINGS, None),
        (Finding("/etc/ceph/ceph.client.admin.keyring", "cephx-keyring"), CLUSTER_KEYRINGS, "cephx-keyring:/etc/ceph/*.client.*.keyring"),
        (Finding("/etc/ceph/ceph.mon.keyring", "cephx-keyring"), CLUSTER_KEYRINGS, None),
        (Finding("/var/lib/ceph/bootstrap-osd/ceph.keyring", "cephx-keyring"), CLUSTER_KEYRINGS, None),
        (Finding("/opt/x/key.pem", "private-key"), ["/opt/x/*"], "/opt/x/*"),
        (Finding("/opt/x/key.pem", "private-key"), ["aws-credentials:/opt/*"], None),
        (Finding("/opt/x/key.pem", "private-key"), [], None),
    ],
)
def test_allow_match(finding: Finding, allow: list[str], entry: str | None) -> None:
    assert allow_match(finding, allow) == entry


def test_report_lines_and_require_clean() -> None:
    clean = AuditReport("docker://x")
    assert clean.ok and require_clean(clean) is clean and "clean" in clean.lines()[0]
    bad = AuditReport("docker://x", findings=[Finding("/root/openrc", "openstack-password", "OS_PASSWORD with a value")])
    assert not bad.ok and bad.kinds("/root/openrc") == {"openstack-password"}
    with pytest.raises(AuditFailed) as e:
        require_clean(bad)
    assert "openstack-password" in str(e.value) and "/root/openrc" in str(e.value) and "Hint:" in str(e.value)


# --- the scanner over a temp tree (LocalTarget), one kind at a time -----------------
def test_clean_tree_passes(tmp_path: Path) -> None:
    plant(tmp_path, "/etc/machine-id", "", 0o444)
    plant(tmp_path, "/root/.ssh/authorized_keys", "")
    plant(tmp_path, "/home/admin/.bash_history", "")
    plant(tmp_path, "/home/admin/.ssh/id_ed25519.pub", "ssh-ed25519 AAAAC3Nza admin@x\n", 0o644)
    plant(tmp_path, "/etc/glance/glance-api.conf", "[database]\nconnection = sqlite:////var/lib/glance/glance.sqlite\n#password = x\npassword =\n", 0o640)
    plant(tmp_path, "/root/openrc-example", "export OS_PASSWORD=\n", 0o600)
    plant(tmp_path, "/etc/ceph/ceph.conf", "[global]\nfsid = 1\n", 0o644)
    plant(tmp_path, "/usr/share/doc/x/README", "-----BEGIN PUBLIC KEY-----\n" + B64 + "\n", 0o644)
    # the virtual file systems are not part of the image
    plant(tmp_path, "/proc/1/environ", _pem())
    plant(tmp_path, "/run/secret.pem", _pem())
    report = audit(LocalTarget(), root=str(tmp_path))
    assert report.ok, report.lines()
    require_clean(report)


def test_private_key(tmp_path: Path) -> None:
    p = plant(tmp_path, "/opt/x/key.pem", _pem("OPENSSH "))
    assert found(tmp_path) == {(p, "private-key")}


def test_ssh_host_key(tmp_path: Path) -> None:
    k = plant(tmp_path, "/etc/ssh/ssh_host_ed25519_key", _pem("OPENSSH "))
    pub = plant(tmp_path, "/etc/ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 AAAA root@x\n", 0o644)
    assert found(tmp_path) == {(k, "ssh-host-key"), (pub, "ssh-host-key")}


def test_authorized_keys(tmp_path: Path) -> None:
    a = plant(tmp_path, "/home/admin/.ssh/authorized_keys", "ssh-ed25519 AAAA build-key\n")
    b = plant(tmp_path, "/root/.ssh/authorized_keys2", "ssh-rsa AAAA build-key\n")
    assert found(tmp_path) == {(a, "authorized-keys"), (b, "authorized-keys")}


def test_shell_history(tmp_path: Path) -> None:
    paths = [plant(tmp_path, p, "ls\n") for p in ("/root/.bash_history", "/home/admin/.python_history", "/var/lib/postgresql/.psql_history")]
    assert found(tmp_path) == {(p, "shell-history") for p in paths}


def test_cephx_keyring(tmp_path: Path) -> None:
    body = "[client.images]\n\tkey = AQBJmVxmAAAAABAAk3Qq5qB7Zl2sZ0Vf3Gc9xw==\n"
    a = plant(tmp_path, "/var/lib/ceph/osd/ceph-0/keyring", body)
    b = plant(tmp_path, "/etc/ceph/ceph.client.images.keyring", body)
    assert found(tmp_path) == {(a, "cephx-keyring"), (b, "cephx-keyring")}
    # keyrings rotated at first boot can be allowed, explicitly, and stay visible as allowed
    report = audit(LocalTarget(), root=str(tmp_path), allow=["cephx-keyring:/var/lib/ceph/osd/*/keyring"])
    assert {f.path for f in report.findings} == {b}
    assert [f.path for f in report.allowed] == [a] and "allowed by" in report.allowed[0].detail
    report = audit(LocalTarget(), root=str(tmp_path), allow=CLUSTER_KEYRINGS)
    assert report.ok and {f.path for f in report.allowed} == {a, b}
    # ... but never when everyone can read them
    os.chmod(tmp_path / "etc/ceph/ceph.client.images.keyring", 0o644)
    report = audit(LocalTarget(), root=str(tmp_path), allow=CLUSTER_KEYRINGS)
    assert {(f.path, f.kind) for f in report.findings} == {(b, "world-readable-secret")}


def test_openstack_password(tmp_path: Path) -> None:
    conf = plant(
        tmp_path,
        "/etc/glance/glance-api.conf",
        f"[database]\nconnection = mysql+pymysql://glance:{SECRET_VALUE}@127.0.0.1/glance\n",
        0o640,
    )
    nova = plant(tmp_path, "/etc/nova/nova.conf", f"[DEFAULT]\ntransport_url = rabbit://openstack:{SECRET_VALUE}@ctl:5672/\n", 0o640)
    ks = plant(tmp_path, "/etc/keystone/keystone.conf", f"[x]\nadmin_password = {SECRET_VALUE}\n", 0o640)
    rc = plant(tmp_path, "/home/admin/admin-openrc.sh", f"export OS_USERNAME=admin\nexport OS_PASSWORD='{SECRET_VALUE}'\n")
    cy = plant(tmp_path, "/etc/openstack/clouds.yaml", f"clouds:\n  demo:\n    auth:\n      password: {SECRET_VALUE}\n", 0o640)
    report = audit(LocalTarget(), root=str(tmp_path))
    assert {(f.path, f.kind) for f in report.findings} == {(p, "openstack-password") for p in (conf, nova, ks, rc, cy)}
    assert SECRET_VALUE not in "\n".join(report.lines())
    with pytest.raises(AuditFailed) as e:
        require_clean(report)
    assert SECRET_VALUE not in str(e.value)


def test_aws_credentials(tmp_path: Path) -> None:
    creds = plant(tmp_path, "/home/admin/.aws/credentials", "[default]\naws_access_key_id = x\n")
    env = plant(tmp_path, "/etc/default/uploader", f"AWS_ACCESS_KEY_ID={_akia()}\n", 0o640)
    sec = plant(tmp_path, "/var/lib/app/conf.ini", f"aws_secret_access_key = {AWS_SECRET}\n", 0o640)
    # AWS's documented examples are not credentials, nor is code that names the option
    plant(tmp_path, "/etc/doc-example", f"{_akia('IOSFODNN7EXAMPLE')}\naws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n", 0o644)
    plant(tmp_path, "/opt/lib/x.py", "def f(aws_secret_access_key=None):\n    pass\n", 0o644)
    assert found(tmp_path) == {(creds, "aws-credentials"), (env, "aws-credentials"), (sec, "aws-credentials")}


def test_machine_id(tmp_path: Path) -> None:
    p = plant(tmp_path, "/etc/machine-id", "0123456789abcdef0123456789abcdef\n", 0o444)
    assert found(tmp_path) == {(p, "machine-id")}
    plant(tmp_path, "/etc/machine-id", "uninitialized\n", 0o444)
    assert found(tmp_path) == set()


def test_build_secret(tmp_path: Path) -> None:
    p = plant(tmp_path, "/var/lib/ceph-openstack-ami/secrets/admin-password", "x\n")
    assert found(tmp_path) == {(p, "build-secret")}


def test_world_readable_secret(tmp_path: Path) -> None:
    p = plant(tmp_path, "/root/openrc", f"export OS_PASSWORD={SECRET_VALUE}\n", 0o644)
    assert found(tmp_path) == {(p, "openstack-password"), (p, "world-readable-secret")}
    os.chmod(tmp_path / "root/openrc", 0o640)
    assert found(tmp_path) == {(p, "openstack-password")}


@pytest.mark.parametrize(
    "content, kind",
    [
        (_pem(), "private-key"),
        (_pem("EC "), "private-key"),
        (_pem(""), "private-key"),  # PKCS#8
        (_pem("ENCRYPTED "), "private-key"),
        (_pem("RSA ", "Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00FF\n\n" + B64), "private-key"),
        ('{"key": "' + _pem(sep="\\n") + '"}', "private-key"),  # inside JSON
        ("tls:\n  key: |\n    " + _pem().replace("\n", "\n    "), "private-key"),  # indented YAML
        ('HEADER = "' + "-----BEGIN RSA " + 'PRIVATE KEY-----\\n"\nFOOTER = "x"\n', None),  # code naming the header
        ("-----BEGIN PUBLIC KEY-----\n" + B64 + "\n", None),
        ("-----BEGIN RSA " + "PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----\n", None),  # elided docs example
        ("[client.x]\n    key = AQBJmVxmAAAAABAAk3Qq5qB7Zl2sZ0Vf3Gc9xw==\n", "cephx-keyring"),
        ("[client.x]\n    key =\n", None),
        ("# key = AQBJmVxmAAAAABAAk3Qq5qB7Zl2sZ0Vf3Gc9xw==\n", "cephx-keyring"),  # a key in a comment is still a key
        (f"id={_akia()}", "aws-credentials"),
        (f"id=x{_akia()}", None),  # part of a longer word
        (f'"aws_secret_access_key": "{AWS_SECRET}"', "aws-credentials"),
        ("aws_secret_access_key = ${SECRET}", None),
    ],
)
def test_content_classifier(tmp_path: Path, content: str, kind: str | None) -> None:
    p = plant(tmp_path, "/srv/app/file.txt", content)
    assert found(tmp_path) == ({(p, kind)} if kind else set())


@pytest.mark.parametrize(
    "line, hit",
    [
        ("password = hunter2", True),
        ("  admin_password=hunter2", True),
        ("memcache_secret_key = abc", True),
        ("password =", False),
        ("password = ", False),
        ("#password = hunter2", False),
        ("password_hash_algorithm = bcrypt", False),
        ("max_password_length = 4096", False),
        ("rbd_secret_uuid = 457eb676-33da-42ec-9a8c-9293d545c337", False),
        ("connection = mysql+pymysql://nova:hunter2@127.0.0.1/nova", True),
        ("connection = sqlite:////var/lib/nova/nova.sqlite", False),
        ("connection = mysql+pymysql://nova@127.0.0.1/nova", False),
        ("transport_url = rabbit://openstack:hunter2@ctl:5672/", True),
        ("# transport_url = rabbit://openstack:hunter2@ctl:5672/", False),
        ("www_authenticate_uri = http://ctl:5000/", False),
    ],
)
def test_service_conf_classifier(tmp_path: Path, line: str, hit: bool) -> None:
    p = plant(tmp_path, "/etc/cinder/cinder.conf", f"[section]\n{line}\n", 0o640)
    assert found(tmp_path) == ({(p, "openstack-password")} if hit else set())


@pytest.mark.parametrize(
    "line, hit",
    [
        ("export OS_PASSWORD=hunter2", True),
        ("OS_PASSWORD='hunter2'", True),
        ('export OS_PASSWORD="hunter2"', True),
        ("export OS_PASSWORD=", False),
        ('export OS_PASSWORD=""', False),
        ("# export OS_PASSWORD=hunter2", False),
    ],
)
def test_openrc_classifier(tmp_path: Path, line: str, hit: bool) -> None:
    p = plant(tmp_path, "/home/admin/demo-openrc", line + "\n")
    assert found(tmp_path) == ({(p, "openstack-password")} if hit else set())


def test_packaged_test_fixture_is_allowed_only_when_unmodified(tmp_path: Path) -> None:
    rel = "usr/lib/python3/dist-packages/foo/tests/data/key.pem"
    content = _pem()
    p = plant(tmp_path, "/" + rel, content, 0o644)
    md5 = hashlib.md5(content.encode()).hexdigest()
    plant(tmp_path, "/var/lib/dpkg/info/python3-foo.md5sums", f"{md5}  {rel}\n", 0o644)
    report = audit(LocalTarget(), root=str(tmp_path))
    assert report.ok, report.lines()
    assert {(f.path, f.kind) for f in report.allowed} == {(p, "private-key"), (p, "world-readable-secret")}
    assert "python3-foo" in report.allowed[0].detail
    plant(tmp_path, "/" + rel, _pem("EC "), 0o600)  # changed since the package shipped it
    assert found(tmp_path) == {(p, "private-key")}


def test_unpackaged_key_under_usr_is_reported(tmp_path: Path) -> None:
    p = plant(tmp_path, "/usr/local/share/app/server.key", _pem(), 0o600)
    assert found(tmp_path) == {(p, "private-key")}


def test_scan_is_one_round_trip(tmp_path: Path) -> None:
    calls: list[str] = []

    class Counting(LocalTarget):
        def _exec(self, command: str, stdin: bytes | None, timeout: float | None) -> tuple[int, bytes, bytes]:
            calls.append(command)
            return super()._exec(command, stdin, timeout)

    for i in range(30):
        plant(tmp_path, f"/home/u{i}/.bash_history", "ls\n")
    report = audit(Counting(), root=str(tmp_path))
    assert len(report.findings) == 30 and len(calls) == 1


def test_broken_scan_is_an_error() -> None:
    class Broken(LocalTarget):
        def _exec(self, command: str, stdin: bytes | None, timeout: float | None) -> tuple[int, bytes, bytes]:
            return 1, b"@@uid\x000\x00", b"find: unknown predicate `-printf'\n"

    with pytest.raises(AuditFailed, match="did not run cleanly"):
        audit(Broken(), root="/nonexistent")


def test_module_constants_are_documented() -> None:
    assert patterns_mod.BUILD_SECRETS == BUILD_SECRETS
    assert all(entry.split(":", 1)[0] == "cephx-keyring" for entry in CLUSTER_KEYRINGS)


class WithoutPcre(LocalTarget):
    """A target whose grep has no -P (busybox-like): the scan falls back to ERE patterns."""

    def _exec(self, command: str, stdin: bytes | None, timeout: float | None) -> tuple[int, bytes, bytes]:
        return super()._exec(command.replace("then P=1;", "then P=;", 1), stdin, timeout)


def test_fallback_without_grep_p(tmp_path: Path) -> None:
    key = plant(tmp_path, "/opt/x/key.pem", _pem("OPENSSH "))
    env = plant(tmp_path, "/etc/default/uploader", f"AWS_ACCESS_KEY_ID={_akia()}\n", 0o640)
    sec = plant(tmp_path, "/root/.config/app.ini", f"aws_secret_access_key = {AWS_SECRET}\n")
    plant(tmp_path, "/opt/lib/x.py", 'HEADER = "-----BEGIN RSA ' + 'PRIVATE KEY-----" + x\n', 0o644)
    report = audit(WithoutPcre(), root=str(tmp_path))
    assert {(f.path, f.kind) for f in report.findings} == {(key, "private-key"), (env, "aws-credentials"), (sec, "aws-credentials")}
