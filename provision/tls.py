"""TLS for every public port: this instance's own key and self-signed certificate, or the owner's.

Apache terminates TLS for the dashboard, noVNC and the public API endpoints with the files
:func:`cert_files` names. Unless the owner brings a certificate (``tls.cert_file`` and
``tls.key_file``), the boot job ``coa-tls`` (:func:`ensure`) keeps them right at every boot:

* a **key per instance** (EC P-256, 0600 root, under ``<state_dir>/secrets/``, which the image's
  scrub empties): made anew when the instance-id or the machine-id differs from the ones
  recorded next to it, so neither a metadata outage at first boot nor a copied disk keeps the
  image's key;
* a **self-signed certificate** whose SANs are the public hostname, the private IPv4 and the
  hostname setting: made anew whenever the SANs differ (a stop/start gives a new public name),
  when it does not belong to the key, or when it expires within ``tls.renew_days``.

Its SHA-256 fingerprint is the owner's way to check the certificate: it is printed once on the
console, next to the admin password on a new instance (:mod:`provision.openstack.instance`), or
alone when a later boot made a new certificate (:func:`announce_line`).

Command builders and parsers are pure (tested as data); the apply functions run the
``openssl`` command line through a Target. Standard library only (runs on the instance).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Sequence

from . import console
from .exceptions import ConfigError, TlsError
from .hostname import check_fqdn, check_ipv4, check_short_name
from .instance import InstanceInfo
from .settings import Settings
from .steps import Log, StepResult
from .systemd import bounded, restart_if_active
from .target import Target, command_line

#: The boot job that keeps the certificate (its unit is ``coa-tls.service``).
JOB_NAME = "tls"
UNIT = f"coa-{JOB_NAME}.service"
#: Under ``state_dir``: our key and the instance it was made for (the scrub removes ``secrets/*``).
KEY_NAME = "secrets/tls/key.pem"
IDENTITY_NAME = "secrets/tls/instance"
#: Under ``state_dir``: our certificate (public; readable by every local client that wants to verify).
CERT_NAME = "tls/cert.pem"
MACHINE_ID = "/etc/machine-id"
#: The units that read the certificate and key (restarted when they change while running).
SERVED_BY = ("apache2.service",)
FINGERPRINT_HEX_PAIRS = 32


@dataclass(frozen=True)
class CertFiles:
    """Where the served certificate and key are, and whether the instance makes them (``own``)."""

    cert: str
    key: str
    own: bool


def cert_files(settings: Settings) -> CertFiles:
    """The certificate and key Apache serves: the owner's when both settings name one, else ours.

    Raises:
        ConfigError: only one of ``tls.cert_file`` and ``tls.key_file`` is set, or a path is not absolute and plain.
    """
    t = settings.tls
    if bool(t.cert_file) != bool(t.key_file):
        raise ConfigError("tls.cert_file and tls.key_file go together",
                       hint="set both (your certificate and its key) or neither (the instance makes its own)")
    if t.cert_file:
        for what, path in (("tls.cert_file", t.cert_file), ("tls.key_file", t.key_file)):
            if not path.startswith("/") or any(c.isspace() or c in "\"'\\" for c in path):
                raise ConfigError(f"{what} must be an absolute path without spaces or quotes, not {path!r}",
                               hint="Apache's configuration names it as it is")
        return CertFiles(t.cert_file, t.key_file, False)
    return CertFiles(posixpath.join(settings.state_dir, CERT_NAME), posixpath.join(settings.state_dir, KEY_NAME), True)


def identity_path(settings: Settings) -> str:
    """Where the instance our key was made for is recorded (next to the key)."""
    return posixpath.join(settings.state_dir, IDENTITY_NAME)


def key_identity(instance_id: str, machine_id: str) -> str:
    """What our key is made for: this instance-id on this machine-id (a new one of either: a new key)."""
    return f"instance-id={instance_id.strip()} machine-id={machine_id.strip() or 'none'}"


#: The scheme of :func:`https_url`.
HTTPS = "https"


def https_url(host: str, port: int, path: str = "/") -> str:
    """``https://HOST:PORT/PATH``, without the port when it is 443.

    The scheme is a separate constant: a literal ``"https://"`` in the bytecode, followed by
    opcodes that happen to hold a ``:`` and an ``@``, looks like a URL with a password to the
    image audit (``tests/unit/test_audit_kinds.py`` audits our own bytecode).
    """
    return f"{HTTPS}://{host}{'' if port == 443 else f':{port}'}{path}"


# --- the certificate's names ------------------------------------------------------------
def desired_sans(settings: Settings, public_host: str | None, private_ip: str) -> tuple[str, ...]:
    """The SANs our certificate must carry, in OpenSSL's form: ``DNS:public``, ``DNS:hostname``, ``IP:private``.

    A public "host" that is an address (no public DNS name) is an ``IP:`` entry.

    Raises:
        ConfigError: a name or address is invalid (nothing unchecked reaches OpenSSL's configuration).
    """
    ip = check_ipv4(private_ip, "private IPv4 address")
    names: list[str] = []
    if public_host and public_host.strip():
        host = public_host.strip()
        try:
            names.append("IP:" + check_ipv4(host))
        except ConfigError:
            names.append("DNS:" + check_fqdn(host, "public hostname").lower())
    names += ["DNS:" + check_short_name(settings.hostname).lower(), "IP:" + ip]
    return tuple(dict.fromkeys(names))


def common_name(settings: Settings, sans: Sequence[str]) -> str:
    """The subject's CN: the first SAN's value when it fits X.509's 64 characters, else the hostname."""
    first = sans[0].split(":", 1)[1] if sans else settings.hostname
    return first if len(first) <= 64 else settings.hostname


def render_req_config(cn: str, sans: Sequence[str]) -> str:
    """OpenSSL's ``req`` configuration for our self-signed server certificate (no CA, serverAuth only).

    Our own configuration, not the distribution's ``openssl.cnf``: what the certificate
    carries does not depend on the image's defaults.
    """
    return (
        "# Made by ceph-openstack-ami (provision/tls.py) for this instance's certificate.\n"
        "[req]\n"
        "distinguished_name = dn\n"
        "prompt = no\n"
        "x509_extensions = server\n"
        "[dn]\n"
        f"CN = {cn}\n"
        "[server]\n"
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature\n"
        "extendedKeyUsage = serverAuth\n"
        f"subjectAltName = {', '.join(sans)}\n"
        "subjectKeyIdentifier = hash\n"
    )


# --- openssl command lines (pure) -------------------------------------------------------
def keygen_argv(path: str) -> list[str]:
    """A new EC P-256 private key at ``path`` (run under ``umask 077``)."""
    return ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path]


def selfsign_argv(config: str, key: str, cert: str, days: int) -> list[str]:
    """A self-signed certificate for ``key`` at ``cert``, valid ``days``, signed with SHA-256."""
    return ["openssl", "req", "-new", "-x509", "-config", config, "-key", key, "-out", cert, "-days", str(days), "-sha256"]


def fingerprint_argv(cert: str) -> list[str]:
    """Print the certificate's SHA-256 fingerprint."""
    return ["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", cert]


def sans_argv(cert: str) -> list[str]:
    """Print the certificate's subjectAltName extension."""
    return ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", cert]


def checkend_argv(cert: str, seconds: int) -> list[str]:
    """Exit 0 when the certificate is still valid ``seconds`` from now, 1 when it expires before."""
    return ["openssl", "x509", "-noout", "-checkend", str(seconds), "-in", cert]


def cert_pubkey_argv(cert: str) -> list[str]:
    """Print the certificate's public key (PEM)."""
    return ["openssl", "x509", "-noout", "-pubkey", "-in", cert]


def key_pubkey_argv(key: str) -> list[str]:
    """Print the public half of the private key (PEM; never the private key)."""
    return ["openssl", "pkey", "-pubout", "-in", key]


# --- parsers (pure) -----------------------------------------------------------------------
def parse_fingerprint(text: str) -> str:
    """``AB:CD:...`` (32 pairs, upper case) from ``openssl x509 -fingerprint -sha256`` output.

    OpenSSL 3 prints ``sha256 Fingerprint=...``, 1.1 ``SHA256 Fingerprint=...``.

    Raises:
        TlsError: no SHA-256 fingerprint in ``text``.
    """
    for line in text.splitlines():
        label, sep, value = line.strip().partition("=")
        if sep and label.lower().replace(" ", "") == "sha256fingerprint":
            pairs = value.strip().upper().split(":")
            if len(pairs) == FINGERPRINT_HEX_PAIRS and all(len(p) == 2 and all(c in "0123456789ABCDEF" for c in p) for p in pairs):
                return ":".join(pairs)
    raise TlsError("openssl printed no SHA-256 fingerprint", hint="check the certificate with `openssl x509 -noout -text -in CERT`")


def parse_sans(text: str) -> tuple[str, ...]:
    """The SANs of ``openssl x509 -ext subjectAltName`` output as ``DNS:name`` / ``IP:addr`` (names lower-cased)."""
    out: list[str] = []
    for line in text.splitlines():
        if "Subject Alternative Name" in line:
            continue
        for item in line.split(","):
            kind, sep, value = item.strip().partition(":")
            if not sep:
                continue
            kind = "IP" if kind.strip() == "IP Address" else kind.strip()
            value = value.strip()
            out.append(f"{kind}:{value.lower() if kind == 'DNS' else value}")
    return tuple(out)


def same_sans(have: Sequence[str], want: Sequence[str]) -> bool:
    """True when two SAN lists name the same entries (order and duplicates aside)."""
    return set(have) == set(want)


# --- what is there, and what to do (pure) ----------------------------------------------
@dataclass(frozen=True)
class Observed:
    """Our key and certificate as found: for whom the key was made, the certificate's state.

    ``recorded``: the identity record as found, also when the key itself is gone.
    """

    key_for: str | None  # None: no key
    cert: bool
    matches_key: bool
    sans: tuple[str, ...]
    expiring: bool
    recorded: str | None = None


def plan(identity: str, sans: Sequence[str], seen: Observed) -> tuple[str, str]:
    """What to do: ``("key", why)`` a new key and certificate, ``("cert", why)`` a new certificate, ``("keep", why)``."""
    if seen.key_for is None:
        return "key", "no key yet"
    if seen.key_for != identity:
        return "key", f"the key was made for {seen.key_for}, this is {identity}"
    if not seen.cert:
        return "cert", "no certificate yet"
    if not seen.matches_key:
        return "cert", "the certificate is not the key's"
    if not same_sans(seen.sans, sans):
        return "cert", f"names changed from {', '.join(seen.sans) or 'none'} to {', '.join(sans)}"
    if seen.expiring:
        return "cert", "the certificate expires soon"
    return "keep", f"certificate for {', '.join(sans)} current"


def announces(recorded: str | None, instance_id: str) -> bool:
    """True when this job prints a new certificate's fingerprint: this instance made a key here before.

    On a new instance (another instance-id recorded, or no record: the image's scrub removed it)
    the secrets job prints the fingerprint with the admin password; on any other new
    certificate (a new name, a new machine-id, a lost key) nothing else would.
    """
    return recorded is not None and recorded.split()[0] == f"instance-id={instance_id.strip()}"


# --- applying, through a Target ----------------------------------------------------------
def require_openssl(target: Target) -> None:
    """Raise TlsError unless the ``openssl`` command line is installed."""
    if not target.run("command -v openssl >/dev/null", check=False).ok:
        raise TlsError("The openssl command is not installed on this host", hint="apt-get install openssl")


def fingerprint(target: Target, cert: str) -> str:
    """The SHA-256 fingerprint of the certificate at ``cert``."""
    return parse_fingerprint(target.run(fingerprint_argv(cert)).stdout)


def served_fingerprint(target: Target, settings: Settings) -> str | None:
    """The fingerprint of the certificate Apache serves, or None when it is missing or unreadable."""
    files = cert_files(settings)
    r = target.run(fingerprint_argv(files.cert), check=False)
    try:
        return parse_fingerprint(r.stdout) if r.ok else None
    except TlsError:
        return None


def key_matches(target: Target, cert: str, key: str) -> bool:
    """True when the certificate at ``cert`` is for the private key at ``key`` (public keys compared)."""
    a = target.run(cert_pubkey_argv(cert), check=False)
    b = target.run(key_pubkey_argv(key), check=False)
    return a.ok and b.ok and a.stdout.strip() == b.stdout.strip() != ""


def observe(target: Target, settings: Settings, files: CertFiles) -> Observed:
    """Read our key's record and the certificate's SANs, key and expiry (never the key itself)."""
    record = identity_path(settings)
    recorded = (target.read(record).decode().strip() or None) if target.exists(record) else None
    key_for = recorded if target.exists(files.key) else None
    cert = target.exists(files.cert)
    if not cert:
        return Observed(key_for, False, False, (), False, recorded)
    sans = target.run(sans_argv(files.cert), check=False)
    soon = settings.tls.renew_days * 86400
    expiring = not target.run(checkend_argv(files.cert, soon), check=False).ok
    return Observed(key_for, True, key_for is not None and key_matches(target, files.cert, files.key),
                    parse_sans(sans.stdout) if sans.ok else (), expiring, recorded)


def make_key(target: Target, key: str) -> str:
    """A new key next to ``key`` (``KEY.new``, 0600), renamed over it only by :func:`make_certificate`'s caller."""
    tmp = key + ".new"
    target.run(["install", "-d", "-m", "0700", posixpath.dirname(posixpath.dirname(key)), posixpath.dirname(key)])
    target.run(["rm", "-f", tmp])
    target.run("umask 077 && " + command_line(keygen_argv(tmp)))
    target.run(["chmod", "0600", tmp])
    return tmp


def make_certificate(target: Target, settings: Settings, key: str, cert: str, sans: Sequence[str]) -> None:
    """A self-signed certificate for ``key`` with ``sans`` at ``cert`` (written aside, then renamed: 0644)."""
    tmp, config = cert + ".new", cert + ".req.cnf"
    target.run(["install", "-d", "-m", "0755", posixpath.dirname(cert)])
    target.put(config, render_req_config(common_name(settings, sans), sans), 0o600)
    try:
        target.run("umask 022 && " + command_line(selfsign_argv(config, key, tmp, settings.tls.cert_days)))
    finally:
        target.run(["rm", "-f", config])
    target.run(["chmod", "0644", tmp])
    target.run(["mv", "-f", tmp, cert])


def machine_id(target: Target, path: str = MACHINE_ID) -> str:
    """This disk's systemd machine-id (empty when there is none yet)."""
    return target.read(path).decode().strip() if target.exists(path) else ""


def announce_line(settings: Settings, public_host: str, fp: str) -> str:
    """The console line of a certificate made on a later boot of this instance (no secret in it)."""
    return f"ceph-openstack-ami: new TLS certificate for {https_url(public_host, settings.tls.dashboard_port)} ({fingerprint_label(fp)})"


def fingerprint_label(fp: str | None) -> str:
    """How the console names the certificate: ``certificate SHA-256 AB:CD:...``."""
    return f"certificate SHA-256 {fp}" if fp else "no certificate (see journalctl -u coa-tls)"


def to_console(line: str, log: Log, device: str = console.CONSOLE) -> None:
    """Write ``line`` (no secret in it) for the owner: on the console device, as the admin password's
    line is, and in the job's log.

    Not through the journal (``StandardError=journal+console``): journald prefixes what it forwards
    with a timestamp and the unit's name, so the line would not start with ``ceph-openstack-ami:``
    where ``get-console-output`` shows it (seen in the sim: ``[ 1758.71] coa-tls[295]: ...``).
    """
    log(line)
    console.to_console(line, line, log, device)


def ensure(target: Target, settings: Settings, info: InstanceInfo, log: Log, announce: Log | None = None,
           machine_id_path: str = MACHINE_ID) -> StepResult:
    """Our key (once per instance) and certificate (whenever its names change) in place; or check the owner's.

    Unit ordering: every boot, ``After=coa-hostname.service``, ``Before=apache2.service`` and the
    OpenStack jobs (the secrets job prints the fingerprint). When Apache runs already (the job
    run by hand), its restart is queued.

    Raises:
        TlsError: openssl is missing, or the owner's certificate or key is missing or not a pair.
    """
    require_openssl(target)
    files = cert_files(settings)
    public = info.public_hostname or info.local_ipv4
    sans = desired_sans(settings, public, info.local_ipv4)
    if not files.own:
        return check_owner_certificate(target, files, sans, log)
    identity = key_identity(info.instance_id, machine_id(target, machine_id_path))
    seen = observe(target, settings, files)
    action, why = plan(identity, sans, seen)
    if action == "keep":
        return StepResult("tls", False, why)
    log(f"tls: {why}: making a new {'key and ' if action == 'key' else ''}certificate")
    key = make_key(target, files.key) if action == "key" else files.key
    make_certificate(target, settings, key, files.cert, sans)
    if action == "key":
        target.run(["mv", "-f", key, files.key])
        target.put(identity_path(settings), identity + "\n", 0o600)
    fp = fingerprint(target, files.cert)
    restart_if_active(target, SERVED_BY, log, queue=True)
    if announces(seen.recorded, info.instance_id):
        line = announce_line(settings, public, fp)
        if announce is None:
            to_console(line, log)
        else:
            announce(line)
    made = "key and certificate" if action == "key" else "certificate"
    return StepResult("tls", True, f"{why}: new {made} for {', '.join(sans)} ({fingerprint_label(fp)})")


def check_owner_certificate(target: Target, files: CertFiles, sans: Sequence[str], log: Log) -> StepResult:
    """The owner's certificate and key: present and a pair (never written); warnings for missing names or loose modes.

    Raises:
        TlsError: a file is missing, or the certificate is not the key's.
    """
    for what, path in (("tls.cert_file", files.cert), ("tls.key_file", files.key)):
        if not target.exists(path):
            raise TlsError(f"{what} names {path}, which does not exist on this instance",
                           hint="put your certificate and key there (user data, your own image) or empty both settings")
    if not key_matches(target, files.cert, files.key):
        raise TlsError(f"The certificate {files.cert} is not for the key {files.key}", hint="tls.key_file must be the certificate's private key (PEM)")
    r = target.run(sans_argv(files.cert), check=False)
    missing = [n for n in sans if n not in (parse_sans(r.stdout) if r.ok else ())]
    if missing:
        log(f"tls: warning: your certificate does not name {', '.join(missing)}: clients that check names refuse it there")
    state = target.file_state(files.key)
    if state is not None and state.mode & 0o077:
        log(f"tls: warning: your key {files.key} is mode {state.mode:o}: make it 0600 root")
    fp = fingerprint(target, files.cert)
    return StepResult("tls", False, f"the owner's certificate {files.cert} ({fingerprint_label(fp)}); never overwritten")


def provision_step(target: Target, settings: Settings) -> tuple[bool, str]:
    """Provisioning: run the boot job ``coa-tls`` now (Apache needs the files before it serves TLS)."""
    before = served_fingerprint(target, settings)
    target.run(bounded(["systemctl", "restart", UNIT], 120))
    after = served_fingerprint(target, settings)
    if after is None:
        raise TlsError(f"{UNIT} made no certificate at {cert_files(settings).cert}", hint=f"see `journalctl -u {UNIT}`")
    if after == before:
        return False, f"certificate in place ({fingerprint_label(after)})"
    return True, f"made the certificate ({fingerprint_label(after)})"
