"""Secrets audit: find what must not be in a public image, through any Target.

The audit runs one shell script on the target (:mod:`provision.image.scan`) that walks the
*whole* file system from the image's root, skipping only virtual file systems (``/proc``,
``/sys``, ``/dev``, ``/run`` and any mount of a pseudo type such as ``proc``, ``sysfs`` or
``cgroup2``, decided by ``find -fstype``; the read-only snap images under ``/snap`` are
skipped and listed). It finds every kind of :data:`~provision.image.patterns.KINDS`:

* by *name* (:data:`~provision.image.patterns.NAME_RULES`): SSH host keys, authorized
  keys, shell and tool histories, the journal, AWS/GCP/Azure credential files, client credential
  files (``.pgpass``, ``.mylogin.cnf``, ``.git-credentials``, ``.netrc``, Subversion's
  auth store), ``/etc/ssl/private/*``, RabbitMQ's Erlang cookie, Fernet/credential key
  repositories, the databases' data directories, a non-empty machine-id, the per-build
  secrets of :data:`~provision.image.patterns.BUILD_SECRETS`;
* by *fields*: password hashes in ``/etc/shadow`` and its backups (a locked hash
  ``!$6$...`` included: it is the hash of a real password);
* by *content*, in every file below the read bound, text or binary
  (:mod:`provision.image.content`): private keys (PEM in every form, OpenSSH, PGP, PuTTY,
  SSH2), cephx keys in any form, passwords and shared secrets in any file, URLs with a
  password, Django keys, AWS/GCP/Azure credentials in INI, env and JSON form, registry
  and npm tokens, RabbitMQ password hashes, debconf password answers.

It reports each finding's path and kind, never the content (the script prints paths,
modes and sizes only), and it **fails closed**: a file it could not read is a finding
(``unreadable``), a file at or over the read bound is one (``unscanned-large-file``), so is a
compressed file whose members the scan cannot search (``unscanned-archive``), and a
scan that did not finish, whose output does not parse or whose tools reported anything else
raises :class:`AuditFailed`.

What it lets through is shown, never dropped: findings an ``allow=`` entry matches
(``GLOB`` or ``KIND:GLOB``, e.g. :data:`CLUSTER_KEYRINGS`), and files it can justify
(:mod:`provision.image.justify`: shipped unmodified by a Debian package, compiled from
such a file, a BlueStore device, an initramfs made on the disk) are in
:attr:`AuditReport.allowed` with their reason. AWS's documented example keys
(``AKIAIOSFODNN7EXAMPLE``) are not credentials (needs ``grep -P``, which Debian and Ubuntu
have). Needs GNU find, grep, xargs, stat and awk on the target.
"""

from __future__ import annotations

import fnmatch
import posixpath
import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from ..exceptions import AuditFailed
from ..settings import Settings
from ..target import Target
from .content import CONTENT_SECTIONS, MAX_SCAN_BYTES
from .justify import (
    ARCHIVE_ONLY,
    LARGE_ONLY,
    SPECIAL_REASONS,
    packaged_command,
    parse_copies,
    parse_packaged,
    parse_special,
    pyc_source,
    special_command,
)
from .patterns import (
    BUILD_SECRETS,
    CLIENT_CONFIG_FILES,
    CLIENT_CREDENTIAL_NAMES,
    KINDS,
    REPORTED_WHEN_EMPTY,
    SECRET_KINDS,
    build_secrets,
    database_dir,
    name_kind,
)
from .scan import ScanError, ScanOutput, ScanRecord, parse_errors, parse_scan, scan_command

#: Allow-list entries for the keyrings ``provision.ceph.boot.rotate_keys`` gives new keys
#: once per instance (``mon.``, the manager, the OSDs, the clients, ``client.admin``). Pass
#: as ``allow=`` only for an image whose first boot runs that rotation. Only the kind
#: ``cephx-keyring`` is allowed: such a keyring readable by everyone is still reported.
#: Ceph's bootstrap keyrings (``/var/lib/ceph/bootstrap-*``) are not allowed.
CLUSTER_KEYRINGS: tuple[str, ...] = (
    "cephx-keyring:/var/lib/ceph/mon/*/keyring",
    "cephx-keyring:/var/lib/ceph/mgr/*/keyring",
    "cephx-keyring:/var/lib/ceph/osd/*/keyring",
    "cephx-keyring:/etc/ceph/*.client.*.keyring",
)
#: Client tools' configuration: a password or token found in one is ``client-credentials``.
_CLIENT_PATHS = ("*/.docker/config.json", "*/.config/containers/auth.json", "*/containers/auth.json")


@dataclass(frozen=True, order=True)
class Finding:
    """One thing that must not be in a public image: where, what kind, and a redacted detail.

    ``by`` says how it was found (``name``, ``content``, ``fields``, ``size``, ``archive``,
    ``scan``); it does not take part in comparisons.
    """

    path: str
    kind: str
    detail: str = ""
    by: str = field(default="", compare=False, repr=False)

    def line(self) -> str:
        """One report line: kind, path, detail."""
        return f"{self.kind:22} {self.path}" + (f"  ({self.detail})" if self.detail else "")


@dataclass
class AuditReport:
    """The outcome of :func:`audit`: findings, what was let through and why, what was skipped, and timing."""

    target: str
    root: str = "/"
    findings: list[Finding] = field(default_factory=list)
    allowed: list[Finding] = field(default_factory=list)
    seconds: float = 0.0
    #: Read-only snap images (mount points under /snap) that were not scanned.
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was found (allowed findings do not count)."""
        return not self.findings

    def kinds(self, path: str) -> set[str]:
        """The kinds found at ``path``."""
        return {f.kind for f in self.findings if f.path == path}

    def lines(self) -> list[str]:
        """Human-readable report lines: a summary, each finding, then each allowed one and what was skipped."""
        where = self.target if self.root == "/" else f"{self.target} (root {self.root})"
        head = (
            f"audit of {where}: clean ({self.seconds:.1f}s)"
            if self.ok
            else f"audit of {where}: {len(self.findings)} finding(s) ({self.seconds:.1f}s)"
        )
        out = [head, *("  " + f.line() for f in self.findings)]
        if self.allowed:
            out.append(f"  allowed ({len(self.allowed)}):")
            out += ["    " + line for line in _allowed_lines(self.allowed)]
        if self.skipped:
            out.append(f"  not scanned: {len(self.skipped)} read-only snap image(s) (signed, as published): {', '.join(self.skipped)}")
        return out


#: Justifications that recur by the hundred (one per packaged file): summarised in the report's lines.
_GROUPS = (
    ("shipped unmodified by package ", "in files shipped unmodified by Debian packages (dpkg md5sums)"),
    ("the same bytes as ", "in copies of files shipped by Debian packages (dpkg md5sums)"),
    ("compiled from ", "in Python bytecode compiled from files shipped unmodified by Debian packages"),
    (SPECIAL_REASONS["dpkg-control"], "in maintainer scripts and control files of installed packages"),
    (SPECIAL_REASONS["plain"], "named like archives but not compressed (magic checked)"),
)


def _allowed_lines(allowed: Sequence[Finding], shown: int = 3) -> list[str]:
    """Report lines of the allowed findings: each one, except the large groups of :data:`_GROUPS` (counted, with examples)."""
    groups: dict[str, list[Finding]] = {}
    single: list[str] = []
    for f in allowed:
        label = next((label for prefix, label in _GROUPS if f.detail.startswith(prefix)), None)
        if label is None:
            single.append(f.line())
        else:
            groups.setdefault(label, []).append(f)
    for label, members in groups.items():
        if len(members) <= shown:
            single += [f.line() for f in members]
            continue
        files = sorted({f.path for f in members})
        more = f", ... (+{len(files) - shown})" if len(files) > shown else ""
        single.append(f"{len(members)} finding(s) {label}, {len(files)} file(s): {', '.join(files[:shown])}{more}")
    return single


def require_clean(report: AuditReport) -> AuditReport:
    """Return ``report`` if it has no findings.

    Raises:
        AuditFailed: listing every finding (path, kind, redacted detail).
    """
    if report.ok:
        return report
    raise AuditFailed(
        "\n".join(
            [f"The secrets audit found {len(report.findings)} thing(s) that must not be in a public image:"]
            + ["  " + f.line() for f in report.findings]
        ),
        hint="run the scrub step (provision.scrub) for what it removes; anything left is a provisioning "
        "bug to fix where the file is made, or an allow= entry with a documented reason",
    )


# --- pure parts: classification ----------------------------------------------------------
_NAME_DETAILS = {
    "authorized-keys": "non-empty ({size} bytes): grants logins on every instance",
    "shell-history": "non-empty history ({size} bytes)",
    "aws-credentials": "AWS credentials file",
    "gcp-credentials": "Google Cloud credentials file",
    "azure-credentials": "Azure CLI credentials file",
    "client-credentials": "client credential file (database, VCS or netrc)",
    "private-key": "file in /etc/ssl/private (a TLS private key)",
    "machine-id": "non-empty: every instance from the image would share this id",
    "journal": "the builder's journal ({size} bytes): every unit's log lines (binary; long fields may be compressed)",
    "build-secret": "per-build secret (BUILD_SECRETS): regenerated per instance, removed by the scrub",
}


def _name_detail(kind: str, path: str, size: int) -> str | None:
    """What a by-name file is reported as, or None when it is harmless (empty)."""
    if kind == "ssh-host-key":
        public = path.endswith(".pub")
        return "SSH host public key: regenerated on first boot" if public else "SSH host private key: shared by every instance"
    if size == 0 and kind not in REPORTED_WHEN_EMPTY:
        return None
    if kind == "openstack-secret":
        if posixpath.basename(path) == ".erlang.cookie":
            return "RabbitMQ's Erlang cookie: controls the broker's node"
        return "Fernet/credential key repository: signs or encrypts an OpenStack service's tokens"
    return _NAME_DETAILS[kind].format(size=size)


def _client_file(path: str) -> bool:
    """True when ``path`` is a client tool's configuration or credential file."""
    base = posixpath.basename(path)
    return base in CLIENT_CONFIG_FILES or base in CLIENT_CREDENTIAL_NAMES or any(fnmatch.fnmatchcase(path, g) for g in _CLIENT_PATHS)


def allow_match(finding: Finding, allow: Iterable[str]) -> str | None:
    """The first allow-list entry that matches ``finding``, or None.

    An entry is ``GLOB`` (any kind at a matching path) or ``KIND:GLOB``.
    """
    for entry in allow:
        kind, sep, glob = entry.partition(":")
        if sep and kind in KINDS:
            if kind == finding.kind and fnmatch.fnmatchcase(finding.path, glob):
                return entry
        elif fnmatch.fnmatchcase(finding.path, entry):
            return entry
    return None


def _record_finding(rec: ScanRecord, scan: ScanOutput, secrets: Sequence[str], max_bytes: int) -> Finding | None:
    """The finding one non-database record stands for (before merging), or None."""
    if rec.section == "names":
        kind = name_kind(rec.path, secrets)
        if kind is None or kind in ("password-file", "service-database"):
            return None
        if kind == "machine-id" and rec.path == "/etc/machine-id" and scan.machine_id_uninitialized:
            return None
        detail = _name_detail(kind, rec.path, rec.size)
        return None if detail is None else Finding(rec.path, kind, detail, "name")
    if rec.section == "large":
        detail = f"{rec.size / 2**20:.1f} MiB, at or over the read bound of {max_bytes / 2**20:g} MiB: not read"
        return Finding(rec.path, "unscanned-large-file", detail, "size")
    if rec.section == "archive":
        return Finding(rec.path, "unscanned-archive", "compressed: the files in it are not searched", "archive")
    if rec.section == "password-hash":
        return Finding(rec.path, "password-hash", f"password hash of {rec.accounts.replace(',', ', ')}", "fields")
    section = CONTENT_SECTIONS.get(rec.section)
    if section is None:
        return None
    client = _client_file(rec.path) or name_kind(rec.path, secrets) == "client-credentials"
    kind = "client-credentials" if section.kind == "openstack-password" and client else section.kind
    return Finding(rec.path, kind, section.detail, "content")


def _databases(scan: ScanOutput) -> list[Finding]:
    """One ``service-database`` finding per database directory with files in it."""
    files: dict[str, int] = {}
    what: dict[str, str] = {}
    for rec in scan.records:
        where = database_dir(rec.path) if rec.section == "names" else None
        if where is not None:
            files[where[0]] = files.get(where[0], 0) + 1
            what[where[0]] = where[1]
    return [Finding(d, "service-database", f"{what[d]} ({n} files)", "name") for d, n in files.items()]


def findings_from_scan(
    scan: ScanOutput, root: str = "/", secrets: Sequence[str] = BUILD_SECRETS, max_bytes: int = MAX_SCAN_BYTES
) -> list[Finding]:
    """Turn parsed scan records into findings (pure): classify, de-duplicate, add world-readable.

    Rules: a private key that is an SSH host key is reported as ``ssh-host-key`` only; a
    build secret is ``build-secret`` only when no other kind applies at its path; a password
    or token in a client tool's file is ``client-credentials``; a file of a secret-bearing
    kind (except an SSH host *public* key) with the other-read bit set is also
    ``world-readable-secret``.
    """
    found: dict[tuple[str, str], Finding] = {}
    modes: dict[str, int] = {}
    for rec in scan.records:
        if rec.section != "password-hash":
            modes[rec.path] = rec.mode
        new = _record_finding(rec, scan, secrets, max_bytes)
        if new is None:
            continue
        seen = found.get((new.path, new.kind))
        if seen is not None:
            details = seen.detail.split("; ")
            detail = seen.detail if new.detail in details else f"{seen.detail}; {new.detail}"
            new = Finding(new.path, new.kind, detail, "name" if "name" in (seen.by, new.by) else new.by)
        found[(new.path, new.kind)] = new
    for f in _databases(scan):
        found[(f.path, f.kind)] = f
    by_path: dict[str, set[str]] = {}
    for path, kind in found:
        by_path.setdefault(path, set()).add(kind)
    result: list[Finding] = []
    for (path, kind), f in found.items():
        kinds = by_path[path]
        if kind == "private-key" and "ssh-host-key" in kinds:
            continue
        if kind == "build-secret" and kinds - {"build-secret"}:
            continue
        result.append(f)
    for path, kinds in by_path.items():
        secret = {k for k in kinds if k in SECRET_KINDS}
        if secret == {"ssh-host-key"} and path.endswith(".pub"):
            continue
        if secret and modes.get(path, 0) & 0o004:
            result.append(Finding(path, "world-readable-secret", f"mode {modes[path]:04o}: readable by every user", "name"))
    if scan.uid and scan.uid != "0" and root.rstrip("/") == "":
        result.append(Finding("/", "unreadable", f"ran as uid {scan.uid}, not root: files only root can read were not scanned", "scan"))
    return sorted(result, key=lambda f: (f.path, KINDS.index(f.kind) if f.kind in KINDS else len(KINDS)))


def unreadable_findings(errors: Sequence[ScanError]) -> list[Finding]:
    """``unreadable`` findings for the files the scan's tools could not read (pure)."""
    out: dict[str, Finding] = {}
    for e in errors:
        detail = "permission denied: not scanned" if e.message == "Permission denied" else f"{e.message}: not scanned"
        out.setdefault(e.path, Finding(e.path, "unreadable", detail, "scan"))
    return list(out.values())


#: Kinds whose bytes being published does not make a copy harmless: a published key put to use.
_KEY_KINDS = frozenset({"private-key", "cephx-keyring"})


def justification(f: Finding, packaged: dict[str, str], copies: dict[str, tuple[str, str]], special: dict[str, str]) -> str | None:
    """Why ``f`` may be let through (its file shown public or not secret-bearing), or None (pure).

    Only findings by content or size can be justified (see :mod:`provision.image.justify`).
    """
    if f.by not in ("content", "size", "archive"):
        return None
    path, tag, source = f.path, special.get(f.path), pyc_source(f.path)
    if tag in ARCHIVE_ONLY:
        return SPECIAL_REASONS[tag] if f.by == "archive" else None
    if path in packaged:
        return f"shipped unmodified by package {packaged[path]} (dpkg md5sum)"
    if tag == "pyc" and source is not None and source in packaged:
        return f"compiled from {source}, shipped unmodified by package {packaged[source]}"
    if tag in SPECIAL_REASONS and (f.by == "size" or (tag not in LARGE_ONLY and f.by == "content")):
        return SPECIAL_REASONS[tag]
    if path in copies and f.kind not in _KEY_KINDS:
        package, ref = copies[path]
        return f"the same bytes as {ref}, shipped by package {package} (dpkg md5sum)"
    return None


# --- doing it --------------------------------------------------------------------------
def _run_scan(
    target: Target, root: str, secrets: Sequence[str], max_bytes: int, timeout: float | None
) -> tuple[list[Finding], list[str]]:
    """Run the scan; its findings and the snap images it skipped. AuditFailed when it cannot be trusted."""
    result = target.run(scan_command(root, secrets, max_bytes), check=False, timeout=timeout)
    errors, other = parse_errors(result.stderr, root)
    try:
        scan = parse_scan(result.stdout, root)
    except ValueError:
        scan = ScanOutput()
        other.append("the scan's output does not parse (damaged or cut)")
    if scan.complete and scan.find_exit not in (0, 1):
        other.append(f"find exited {scan.find_exit}")
    if not scan.complete or other:
        tail = "\n".join((other or result.stderr.strip().splitlines())[-10:])
        raise AuditFailed(
            f"The secrets scan on {target.name} did not run cleanly (exit {result.exit_code})" + (f":\n{tail}" if tail else ""),
            hint="the audit needs GNU find, grep, xargs, stat and awk on the target, and root (or sudo)",
        )
    findings = findings_from_scan(scan, root, secrets, max_bytes) + unreadable_findings(errors)
    return sorted(findings, key=lambda f: (f.path, KINDS.index(f.kind) if f.kind in KINDS else len(KINDS))), scan.snaps


def _checked(target: Target, command: str, paths: Iterable[str], timeout: float | None) -> str:
    """Run a justification command with ``paths`` (image paths) as relative NUL-separated stdin."""
    data = "".join(p.lstrip("/") + "\0" for p in sorted(set(paths)))
    return target.run(command, stdin=data, check=False, timeout=timeout).stdout if data else ""


def justify(target: Target, root: str, findings: list[Finding], timeout: float | None) -> tuple[list[Finding], list[Finding]]:
    """Split ``findings`` into (kept, justified): findings in files shown public or not secret-bearing go to the second list.

    A ``world-readable-secret`` goes with the secrets of its file: justified when all of them are.
    """
    candidates = [f for f in findings if f.by in ("content", "size", "archive")]
    pycs = [f.path for f in candidates if pyc_source(f.path)]
    sources = [s for s in (pyc_source(p) for p in pycs) if s]
    output = _checked(target, packaged_command(root), [f.path for f in candidates] + sources, timeout)
    packaged, copies = parse_packaged(output), parse_copies(output)
    archives = [f.path for f in candidates if f.by == "archive" and f.path not in packaged and f.path not in copies]
    special_paths = [f.path for f in candidates if f.by == "size" or f.path.startswith("/var/lib/dpkg/info/")] + pycs + archives
    special = parse_special(_checked(target, special_command(root), special_paths, timeout))
    reasons = {f: justification(f, packaged, copies, special) for f in findings}
    kept: list[Finding] = []
    justified: list[Finding] = []
    for f in findings:
        reason = reasons[f]
        if f.kind == "world-readable-secret":
            siblings = [reasons[g] for g in findings if g.path == f.path and g.kind in SECRET_KINDS]
            reason = siblings[0] if siblings and all(siblings) else None
        if reason is None:
            kept.append(f)
        else:
            justified.append(Finding(f.path, f.kind, reason, f.by))
    return kept, justified


def audit(
    target: Target,
    settings: Settings | None = None,
    root: str = "/",
    allow: Sequence[str] = (),
    timeout: float | None = 1800,
    max_bytes: int = MAX_SCAN_BYTES,
) -> AuditReport:
    """Scan the target's whole file system for secrets that must not be in a public image.

    Args:
        target: where to look (the builder over SSH, a sim container, ``local``).
        settings: for the cluster name and state directory of the per-build secrets.
        root: the image's root directory on the target (tests use a temporary tree).
        allow: entries ``GLOB`` or ``KIND:GLOB`` whose findings are reported as allowed
            instead (e.g. :data:`CLUSTER_KEYRINGS` where first boot rotates them).
        timeout: seconds before the scan is abandoned (then AuditFailed).
        max_bytes: the read bound: larger files are ``unscanned-large-file`` unless justified.

    Returns:
        The report; ``report.ok`` is False when anything was found. Use
        :func:`require_clean` to turn findings into :class:`AuditFailed`.

    Raises:
        AuditFailed: the scan did not complete, its output does not parse, or its tools
            reported errors other than unreadable or vanished files (the audit would not
            be trustworthy).
    """
    started = time.monotonic()
    secrets = build_secrets(settings)
    findings, skipped = _run_scan(target, root, secrets, max_bytes, timeout)
    findings, allowed = justify(target, root, findings, timeout)
    kept: list[Finding] = []
    for f in findings:
        entry = allow_match(f, allow)
        if entry is None:
            kept.append(f)
        else:
            allowed.append(Finding(f.path, f.kind, f"allowed by {entry!r}", f.by))
    return AuditReport(target.name, root, kept, sorted(allowed), time.monotonic() - started, skipped)
