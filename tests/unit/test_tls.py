"""TLS: the openssl command lines and parsers as data, the plan as a table, and real round trips
through LocalTarget with the openssl of this machine (a key per instance, a certificate that
follows the names, the owner's files left alone), checked with Python's own ``ssl``."""

from __future__ import annotations

import hashlib
import shutil
import socket
import ssl
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from provision import tls
from provision.exceptions import ConfigError, TlsError
from provision.instance import InstanceInfo
from provision.settings import Settings
from provision.target.local import LocalTarget

PUBLIC = "ec2-203-0-113-7.compute-1.amazonaws.com"
FP = ":".join(["AB"] * 32)

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command line")


def info(instance_id: str = "i-0000000000000000a", public: str | None = PUBLIC, ip: str = "10.77.0.5") -> InstanceInfo:
    return InstanceInfo(instance_id, "ami-0123456789abcdef0", "m1.xlarge", ip, "ip-10-77-0-5.ec2.internal", "us-east-1a", "us-east-1",
                        public_hostname=public)


# --- pure ------------------------------------------------------------------------------
def test_sans_are_public_name_hostname_and_private_ip() -> None:
    assert tls.desired_sans(Settings(), PUBLIC.upper(), "10.77.0.5") == (f"DNS:{PUBLIC}", "DNS:cephdemo", "IP:10.77.0.5")
    # No public DNS name: the public "host" is the private address, named once.
    assert tls.desired_sans(Settings(), "10.77.0.5", "10.77.0.5") == ("IP:10.77.0.5", "DNS:cephdemo")
    assert tls.desired_sans(Settings(), None, "10.77.0.5") == ("DNS:cephdemo", "IP:10.77.0.5")


@pytest.mark.parametrize(("public", "ip"), [("evil.example\nDNS:x", "10.0.0.1"), ("a, DNS:b", "10.0.0.1"), (PUBLIC, "10.0.0.1, IP:1.2.3.4")])
def test_sans_refuse_anything_that_is_not_a_name(public: str, ip: str) -> None:
    with pytest.raises(ConfigError):
        tls.desired_sans(Settings(), public, ip)


def test_common_name_fits_x509() -> None:
    assert tls.common_name(Settings(), (f"DNS:{PUBLIC}",)) == PUBLIC
    long = "a" * 60 + ".example.com"
    assert tls.common_name(Settings(), (f"DNS:{long}",)) == "cephdemo"


def test_req_config_is_a_server_certificate_with_the_sans() -> None:
    text = tls.render_req_config(PUBLIC, (f"DNS:{PUBLIC}", "DNS:cephdemo", "IP:10.77.0.5"))
    assert f"CN = {PUBLIC}\n" in text
    assert f"subjectAltName = DNS:{PUBLIC}, DNS:cephdemo, IP:10.77.0.5\n" in text
    assert "basicConstraints = critical, CA:FALSE\n" in text and "extendedKeyUsage = serverAuth\n" in text
    assert "prompt = no\n" in text and "x509_extensions = server\n" in text


def test_openssl_command_lines() -> None:
    assert tls.keygen_argv("/k") == ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "/k"]
    assert tls.selfsign_argv("/c.cnf", "/k", "/c", 825) == [
        "openssl", "req", "-new", "-x509", "-config", "/c.cnf", "-key", "/k", "-out", "/c", "-days", "825", "-sha256"]
    assert tls.fingerprint_argv("/c") == ["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", "/c"]
    assert tls.sans_argv("/c") == ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", "/c"]
    assert tls.checkend_argv("/c", 60) == ["openssl", "x509", "-noout", "-checkend", "60", "-in", "/c"]
    assert tls.key_pubkey_argv("/k") == ["openssl", "pkey", "-pubout", "-in", "/k"]


@pytest.mark.parametrize("text", [f"sha256 Fingerprint={FP}\n", f"SHA256 Fingerprint={FP.lower()}\n", f"noise\nsha256 Fingerprint={FP}"])
def test_fingerprint_parser_reads_openssl_3_and_1_1(text: str) -> None:
    assert tls.parse_fingerprint(text) == FP


@pytest.mark.parametrize("text", ["", "sha1 Fingerprint=AB:CD", "sha256 Fingerprint=AB:CD", f"sha256 Fingerprint={FP[:-2]}ZZ"])
def test_fingerprint_parser_refuses_anything_else(text: str) -> None:
    with pytest.raises(TlsError):
        tls.parse_fingerprint(text)


def test_san_parser_and_comparison() -> None:
    out = f"X509v3 Subject Alternative Name: \n    DNS:{PUBLIC.upper()}, DNS:cephdemo, IP Address:10.77.0.5\n"
    sans = tls.parse_sans(out)
    assert sans == (f"DNS:{PUBLIC}", "DNS:cephdemo", "IP:10.77.0.5")
    assert tls.same_sans(sans, ("IP:10.77.0.5", "DNS:cephdemo", f"DNS:{PUBLIC}"))
    assert not tls.same_sans(sans, ("DNS:cephdemo", "IP:10.77.0.5"))
    assert not tls.same_sans(sans, (*sans, "DNS:other.example"))
    assert tls.parse_sans("") == ()


WANT = (f"DNS:{PUBLIC}", "DNS:cephdemo", "IP:10.77.0.5")
ME = tls.key_identity("i-1", "m-1")


@pytest.mark.parametrize(
    ("seen", "action"),
    [
        (tls.Observed(None, False, False, (), False), "key"),
        (tls.Observed(None, True, False, WANT, False), "key"),  # a certificate without our key (the image's, scrubbed)
        (tls.Observed(tls.key_identity("i-0", "m-1"), True, True, WANT, False), "key"),  # a relaunch: a new instance-id
        (tls.Observed(tls.key_identity("i-1", "m-0"), True, True, WANT, False), "key"),  # a copied disk: a new machine-id
        (tls.Observed(ME, False, False, (), False), "cert"),
        (tls.Observed(ME, True, False, WANT, False), "cert"),
        (tls.Observed(ME, True, True, ("DNS:ec2-old.example", "DNS:cephdemo", "IP:10.77.0.5"), False), "cert"),  # stop/start
        (tls.Observed(ME, True, True, WANT, True), "cert"),
        (tls.Observed(ME, True, True, tuple(reversed(WANT)), False), "keep"),
    ],
)
def test_plan(seen: tls.Observed, action: str) -> None:
    assert tls.plan(ME, WANT, seen)[0] == action


@pytest.mark.parametrize(
    ("recorded", "instance", "announce"),
    [
        (None, "i-1", False),  # no record: the image's first boot, or the builder's
        (tls.key_identity("i-0", "m-1"), "i-1", False),  # a relaunch: the admin password line carries it
        (tls.key_identity("i-1", "m-1"), "i-1", True),
        (tls.key_identity("i-1", "m-0"), "i-1", True),
        (tls.key_identity("i-10", "m-1"), "i-1", False),
    ],
)
def test_who_announces_a_new_certificate(recorded: str | None, instance: str, announce: bool) -> None:
    assert tls.announces(recorded, instance) is announce


def test_key_identity_names_both_signals() -> None:
    assert tls.key_identity("i-1\n", "") == "instance-id=i-1 machine-id=none"


def test_cert_files_ours_or_the_owners() -> None:
    s = Settings().replace(state_dir="/var/lib/x")
    assert tls.cert_files(s) == tls.CertFiles("/var/lib/x/tls/cert.pem", "/var/lib/x/secrets/tls/key.pem", True)
    owner = s.replace(tls={"cert_file": "/etc/ssl/mine.pem", "key_file": "/etc/ssl/private/mine.key"})
    assert tls.cert_files(owner) == tls.CertFiles("/etc/ssl/mine.pem", "/etc/ssl/private/mine.key", False)
    for bad in ({"cert_file": "/etc/ssl/mine.pem"}, {"cert_file": "mine.pem", "key_file": "/k"}, {"cert_file": "/a b", "key_file": "/k"}):
        with pytest.raises(ConfigError):
            tls.cert_files(s.replace(tls=bad))


def test_https_url_leaves_out_443() -> None:
    assert tls.https_url("h", 443) == "https://h/"
    assert tls.https_url("h", 13000, "/v3") == "https://h:13000/v3"


# --- real openssl, through LocalTarget ----------------------------------------------------------
@pytest.fixture
def env(tmp_path: Path) -> dict[str, Any]:
    machine_id = tmp_path / "machine-id"
    machine_id.write_text("0123456789abcdef0123456789abcdef\n")
    return {"settings": Settings().replace(state_dir=str(tmp_path / "state")), "machine_id": str(machine_id), "announced": [], "log": []}


def ensure(env: dict[str, Any], inst: InstanceInfo) -> Any:
    return tls.ensure(LocalTarget(), env["settings"], inst, env["log"].append, env["announced"].append, machine_id_path=env["machine_id"])


def der_fingerprint(cert: str) -> str:
    """The certificate's SHA-256 fingerprint computed by Python, not openssl."""
    der = ssl.PEM_cert_to_DER_cert(Path(cert).read_text())
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def cert_sans(cert: str) -> tuple[str, ...]:
    return tls.parse_sans(LocalTarget().run(tls.sans_argv(cert)).stdout)


def digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@needs_openssl
def test_first_boot_makes_a_private_key_and_a_certificate_for_the_names(env: dict[str, Any]) -> None:
    r = ensure(env, info())
    files = tls.cert_files(env["settings"])
    assert r.changed and "new key and certificate" in r.detail
    assert Path(files.key).stat().st_mode & 0o777 == 0o600 and Path(files.key).parent.stat().st_mode & 0o777 == 0o700
    assert Path(files.cert).stat().st_mode & 0o777 == 0o644
    assert set(cert_sans(files.cert)) == {f"DNS:{PUBLIC}", "DNS:cephdemo", "IP:10.77.0.5"}
    fp = der_fingerprint(files.cert)
    assert tls.served_fingerprint(LocalTarget(), env["settings"]) == fp and fp in r.detail
    assert env["announced"] == []  # a new instance's fingerprint goes out with its admin password
    assert "PRIVATE KEY" not in r.detail + "".join(env["log"])
    again = ensure(env, info())
    assert not again.changed and again.detail.startswith("certificate for ")
    assert der_fingerprint(files.cert) == fp


@needs_openssl
def test_a_new_name_gets_a_new_certificate_for_the_same_key_and_says_so(env: dict[str, Any]) -> None:
    ensure(env, info())
    files = tls.cert_files(env["settings"])
    key, old = digest(files.key), der_fingerprint(files.cert)
    r = ensure(env, info(public="ec2-198-51-100-4.compute-1.amazonaws.com"))
    new = der_fingerprint(files.cert)
    assert r.changed and "names changed" in r.detail and new != old
    assert digest(files.key) == key  # same instance: same key
    assert "DNS:ec2-198-51-100-4.compute-1.amazonaws.com" in cert_sans(files.cert) and f"DNS:{PUBLIC}" not in cert_sans(files.cert)
    assert env["announced"] == [f"ceph-openstack-ami: new TLS certificate for https://ec2-198-51-100-4.compute-1.amazonaws.com/ (certificate SHA-256 {new})"]


@needs_openssl
@pytest.mark.parametrize(("change", "announced"), [("instance-id", False), ("scrubbed", False), ("machine-id", True), ("lost key", True)])
def test_a_new_instance_gets_a_new_key(env: dict[str, Any], change: str, announced: bool) -> None:
    """A new key whenever the key is not this instance's; the job prints its fingerprint unless the
    admin password's console line will (a new instance-id, or no record: the image's scrub)."""
    ensure(env, info())
    files = tls.cert_files(env["settings"])
    key, fp = digest(files.key), der_fingerprint(files.cert)
    inst = info()
    if change == "instance-id":
        inst = info(instance_id="i-0000000000000000b", ip="10.77.0.9")
    elif change == "machine-id":
        Path(env["machine_id"]).write_text("fedcba9876543210fedcba9876543210\n")
    elif change == "scrubbed":  # what the image's scrub does: secrets/* removed
        Path(files.key).unlink()
        Path(tls.identity_path(env["settings"])).unlink()
    else:
        Path(files.key).unlink()
    r = ensure(env, inst)
    assert r.changed and "new key and certificate" in r.detail
    assert digest(files.key) != key and der_fingerprint(files.cert) != fp
    assert tls.key_matches(LocalTarget(), files.cert, files.key)
    assert len(env["announced"]) == int(announced)
    if announced:
        assert der_fingerprint(files.cert) in env["announced"][0]


@needs_openssl
def test_the_certificate_verifies_for_its_names_in_a_real_handshake(env: dict[str, Any]) -> None:
    ensure(env, info(ip="127.0.0.1"))
    files = tls.cert_files(env["settings"])
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(files.cert, files.key)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            for _ in range(2):
                conn, _ = listener.accept()
                try:
                    with server.wrap_socket(conn, server_side=True) as s:
                        s.recv(1)
                except (ssl.SSLError, OSError):
                    pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        client = ssl.create_default_context(cafile=files.cert)  # trust exactly this certificate
        with socket.create_connection(("127.0.0.1", port)) as raw, client.wrap_socket(raw, server_hostname=PUBLIC) as s:
            assert ":".join(f"{b:02X}" for b in hashlib.sha256(s.getpeercert(True) or b"").digest()) == der_fingerprint(files.cert)
            s.send(b"x")
        with pytest.raises(ssl.SSLCertVerificationError), socket.create_connection(("127.0.0.1", port)) as raw:
            client.wrap_socket(raw, server_hostname="other.example")
        thread.join(5)


@needs_openssl
def test_the_owners_certificate_is_used_as_it_is(env: dict[str, Any], tmp_path: Path) -> None:
    ensure(env, info())  # any pair made by openssl will do as "the owner's"
    made = tls.cert_files(env["settings"])
    cert, key = tmp_path / "owner.pem", tmp_path / "owner.key"
    shutil.copy(made.cert, cert)
    shutil.copy(made.key, key)
    key.chmod(0o644)
    env["settings"] = env["settings"].replace(state_dir=str(tmp_path / "other"), tls={"cert_file": str(cert), "key_file": str(key)})
    before = digest(str(cert)), digest(str(key))
    r = ensure(env, info(public="ec2-198-51-100-4.compute-1.amazonaws.com"))
    assert not r.changed and "never overwritten" in r.detail and der_fingerprint(str(cert)) in r.detail
    assert (digest(str(cert)), digest(str(key))) == before and not (tmp_path / "other").exists()
    assert any("does not name DNS:ec2-198-51-100-4" in line for line in env["log"])
    assert any("mode 644" in line for line in env["log"])
    assert env["announced"] == []


@needs_openssl
def test_the_owners_files_must_exist_and_be_a_pair(env: dict[str, Any], tmp_path: Path) -> None:
    ensure(env, info())
    made = tls.cert_files(env["settings"])
    other = tmp_path / "other.key"
    LocalTarget().run(tls.keygen_argv(str(other)))
    for cert, key, match in ((made.cert, str(tmp_path / "missing.key"), "does not exist"), (made.cert, str(other), "is not for the key")):
        env["settings"] = env["settings"].replace(tls={"cert_file": cert, "key_file": key})
        with pytest.raises(TlsError, match=match):
            ensure(env, info())


@pytest.fixture
def no_openssl(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """A PATH with a shell and nothing else."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sh").symlink_to(shutil.which("sh") or "/bin/sh")
    monkeypatch.setenv("PATH", str(bin_dir))
    yield


def test_without_openssl_the_job_says_what_to_install(env: dict[str, Any], no_openssl: None) -> None:
    with pytest.raises(TlsError, match="openssl") as e:
        ensure(env, info())
    assert e.value.hint == "apt-get install openssl"


def test_the_new_certificate_line_starts_a_console_line_and_is_logged(tmp_path: Path) -> None:
    device, logged = tmp_path / "console", []
    device.write_bytes(b"[  OK  ] Started apache2.service\r\n")
    tls.to_console("ceph-openstack-ami: new TLS certificate for https://h/ (certificate SHA-256 AB)", logged.append, str(device))
    assert device.read_bytes().splitlines()[-1] == b"ceph-openstack-ami: new TLS certificate for https://h/ (certificate SHA-256 AB)"
    assert logged == ["ceph-openstack-ami: new TLS certificate for https://h/ (certificate SHA-256 AB)"]


def test_without_a_console_device_the_line_is_still_logged(tmp_path: Path) -> None:
    logged: list[str] = []
    tls.to_console("ceph-openstack-ami: new TLS certificate", logged.append, str(tmp_path / "absent" / "console"))
    assert logged[0] == "ceph-openstack-ami: new TLS certificate" and "no console to write to" in logged[1]
