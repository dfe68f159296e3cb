"""Secrets audit: find what must not be in a public image, through any Target.

The audit runs one shell script on the target (plus one more command when a private key
is found under ``/usr``): a ``find`` for files that are secrets by *name* (SSH host keys,
``authorized_keys``, shell histories, ``~/.aws/credentials``, ``/etc/machine-id``, the
per-build secrets of :data:`BUILD_SECRETS`) and a few ``find | xargs grep -l`` pipelines
for secrets by *content* (private keys, cephx keys, OpenStack passwords, AWS keys). The
script only ever prints paths, modes and sizes: no secret leaves the target, and none is
in a :class:`Finding`. Building the script (:func:`scan_command`) and reading its output
(:func:`parse_scan`) are pure functions, tested as data.

What is not scanned, and why:

* ``/proc``, ``/sys``, ``/dev``, ``/run``: virtual file systems, not part of the image.
* Private keys only: ``/snap`` (read-only squashfs images exactly as published, signed, in
  the Snap Store; writable snap data lives in ``/var/snap`` and ``~/snap``, which are
  scanned), and a file under ``/usr`` that a Debian package ships *unmodified* (its md5sum
  is the one in ``/var/lib/dpkg/info/PACKAGE.md5sums``): such a key is published with the
  package (test fixtures of Python libraries, example certificates), the same on every
  machine that installs it, and not this image's secret. These are listed in
  :attr:`AuditReport.allowed`, never dropped silently.
* Content scans skip files of :data:`MAX_SCAN_BYTES` or more (OSD block files, disk
  images) and binary files (``grep -I``): secrets are small text files.
* ``cephx-keyring`` and AWS key ids/secrets are searched in :data:`SECRET_DIRS` only (where
  configuration and state live), OpenStack passwords in the services' ``*.conf`` under
  :data:`SERVICE_CONF_DIRS`, in ``*openrc*`` and in ``clouds.yaml`` files.
* AWS's documented example keys (``AKIAIOSFODNN7EXAMPLE``, ``wJalr...EXAMPLEKEY``) are
  not credentials (needs ``grep -P``, which Debian and Ubuntu have).

Nothing else is allowed by default: every cephx keyring (``/etc/ceph/*.keyring``, the
monitor's, manager's and OSDs' under ``/var/lib/ceph``) is reported as ``cephx-keyring``.
An image whose first boot rotates them (``provision.ceph.boot.rotate_keys``) is audited
with ``allow=CLUSTER_KEYRINGS`` (or the caller's own ``KIND:GLOB`` entries), and the
allowed findings stay visible in the report.

The kinds, globs and content patterns are in :mod:`provision.image.patterns`, the
script pieces shared with the scrub in :mod:`provision.image.script`. Needs GNU find,
grep, xargs and stat on the target (Debian and Ubuntu have them).
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from ..exceptions import AuditFailed
from ..settings import Settings
from ..target import Target, command_line
from .patterns import (
    AKIA_ERE,
    AKIA_PCRE,
    AWS_SECRET_ERE,
    AWS_SECRET_PCRE,
    BUILD_SECRETS,
    CEPHX_ERE,
    CLOUDS_ERE,
    CONTENT_PRUNED,
    CONTENT_SECTIONS,
    DASHBOARD_DIRS,
    DJANGO_KEY_ERE,
    KINDS,
    MAX_SCAN_BYTES,
    OPENRC_ERE,
    OS_OPTION_ERE,
    OS_URL_ERE,
    PRIVATE_KEY_ERE,
    PRIVATE_KEY_PCRE,
    SECRET_DIRS,
    SECRET_KINDS,
    SERVICE_CONF_DIRS,
    build_secrets,
    name_kind,
)
from .script import names_command, off_root, on_root, prune_expr, section_marker, split_sections

#: Allow-list entries for the keyrings ``provision.ceph.boot.rotate_keys`` gives new keys
#: once per instance (``mon.``, the manager, the OSDs, the clients, ``client.admin``). Pass
#: as ``allow=`` only for an image whose first boot runs that rotation. Only the kind
#: ``cephx-keyring`` is allowed: such a keyring readable by everyone is still reported.
CLUSTER_KEYRINGS: tuple[str, ...] = (
    "cephx-keyring:/var/lib/ceph/mon/*/keyring",
    "cephx-keyring:/var/lib/ceph/mgr/*/keyring",
    "cephx-keyring:/var/lib/ceph/osd/*/keyring",
    "cephx-keyring:/etc/ceph/*.client.*.keyring",
)

#: ``stat`` format of a content match: ``MODE\\tSIZE\\tPATH\\0`` (mode in octal).
_STAT = "%a\\t%s\\t%n\\0"


@dataclass(frozen=True, order=True)
class Finding:
    """One thing that must not be in a public image: where, what kind, and a redacted detail."""

    path: str
    kind: str
    detail: str = ""

    def line(self) -> str:
        """One report line: kind, path, detail."""
        return f"{self.kind:22} {self.path}" + (f"  ({self.detail})" if self.detail else "")


@dataclass
class AuditReport:
    """The outcome of :func:`audit`: findings, what an allow-list let through, and timing."""

    target: str
    root: str = "/"
    findings: list[Finding] = field(default_factory=list)
    allowed: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when nothing was found (allowed findings do not count)."""
        return not self.findings

    def kinds(self, path: str) -> set[str]:
        """The kinds found at ``path``."""
        return {f.kind for f in self.findings if f.path == path}

    def lines(self) -> list[str]:
        """Human-readable report lines: a summary, each finding, then each allowed one."""
        where = self.target if self.root == "/" else f"{self.target} (root {self.root})"
        head = (
            f"audit of {where}: clean ({self.seconds:.1f}s)"
            if self.ok
            else f"audit of {where}: {len(self.findings)} finding(s) ({self.seconds:.1f}s)"
        )
        out = [head, *("  " + f.line() for f in self.findings)]
        if self.allowed:
            out.append(f"  allowed ({len(self.allowed)}):")
            out += ["    " + f.line() for f in self.allowed]
        return out


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


# --- pure parts: paths, globs, script, parser ----------------------------------------

def _name_detail(kind: str, path: str, size: int) -> str | None:
    """What a by-name file is reported as, or None when it is harmless (empty)."""
    if kind == "ssh-host-key":
        public = path.endswith(".pub")
        return "SSH host public key: regenerated on first boot" if public else "SSH host private key: shared by every instance"
    if size == 0:
        return None
    return {
        "authorized-keys": f"non-empty ({size} bytes): grants logins on every instance",
        "shell-history": f"non-empty shell history ({size} bytes)",
        "aws-credentials": "AWS credentials file",
        "machine-id": "non-empty: every instance from the image would share this id",
        "build-secret": "per-build secret (BUILD_SECRETS): regenerated per instance, removed by the scrub",
    }[kind]


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



def _grep_files(find_args: list[str], grep_args: list[str]) -> str:
    """``find ... -print0 | xargs -0 grep -l ... | xargs -0 stat``: MODE\\tSIZE\\tPATH\\0 of matching files."""
    return " | ".join(
        [
            command_line(["find", *find_args, "-print0"]),
            command_line(["xargs", "-0", "-r", "grep", "-lIZ", *grep_args, "--"]),
            command_line(["xargs", "-0", "-r", "stat", f"--printf={_STAT}", "--"]),
        ]
    )



def _either(pcre_cmd: str, ere_cmd: str) -> str:
    """Run ``pcre_cmd`` where grep has -P, else ``ere_cmd``."""
    return f'if [ -n "$P" ]; then {pcre_cmd}; else {ere_cmd}; fi'


def scan_command(root: str = "/", secrets: Sequence[str] = BUILD_SECRETS, max_bytes: int = MAX_SCAN_BYTES) -> str:
    """The whole scan as one shell script (one round trip); read its output with :func:`parse_scan`.

    Args:
        root: the image's root on the target (``/``, or a directory in tests).
        secrets: the per-build secret globs.
        max_bytes: content scans skip files this large or larger.
    """
    start = root if root.rstrip("/") else "/"
    small = ["-type", "f", "-size", f"-{max_bytes}c"]
    secret_dirs = [on_root(root, d) for d in SECRET_DIRS]
    conf_dirs = [on_root(root, d) for d in SERVICE_CONF_DIRS]

    pk_find = command_line(["find", start, *prune_expr(root, CONTENT_PRUNED), *small, "-print0"])
    pk_prefilter = command_line(["xargs", "-0", "-r", "grep", "-lIZ", "-F", "-e", "PRIVATE KEY-----", "--"])
    stat = command_line(["xargs", "-0", "-r", "stat", f"--printf={_STAT}", "--"])
    pk_pcre = command_line(["xargs", "-0", "-r", "grep", "-lZ", "-z", "-P", "-e", PRIVATE_KEY_PCRE, "--"])
    pk_ere = command_line(["xargs", "-0", "-r", "grep", "-lZ", "-E", "-e", PRIVATE_KEY_ERE, "--"])

    in_dirs = [*secret_dirs, *small]
    steps = [
        "export LC_ALL=C",
        "if printf ab | grep -qP 'a(?=b)' 2>/dev/null; then P=1; else P=; fi",
        section_marker("uid"),
        'printf "%s\\0" "$(id -u)"',
        section_marker("names"),
        names_command(root, secrets),
        section_marker("private-key"),
        _either(" | ".join([pk_find, pk_prefilter, pk_pcre, stat]), " | ".join([pk_find, pk_prefilter, pk_ere, stat])),
        section_marker("cephx"),
        _grep_files(in_dirs, ["-E", "-e", CEPHX_ERE]),
        section_marker("os-option"),
        _grep_files([*conf_dirs, "-type", "f", "-name", "*.conf"], ["-E", "-e", OS_OPTION_ERE]),
        section_marker("os-url"),
        _grep_files([*conf_dirs, "-type", "f", "-name", "*.conf"], ["-E", "-e", OS_URL_ERE]),
        section_marker("openrc"),
        _grep_files([*secret_dirs, "-type", "f", "-name", "*openrc*"], ["-E", "-e", OPENRC_ERE]),
        section_marker("clouds"),
        _grep_files([*secret_dirs, "-type", "f", "(", "-name", "clouds.yaml", "-o", "-name", "secure.yaml", ")"], ["-E", "-e", CLOUDS_ERE]),
        section_marker("django-key"),
        _grep_files([*[on_root(root, d) for d in DASHBOARD_DIRS], "-type", "f", "-name", "*.py"], ["-E", "-e", DJANGO_KEY_ERE]),
        section_marker("aws-key-id"),
        _either(_grep_files(in_dirs, ["-P", "-e", AKIA_PCRE]), _grep_files(in_dirs, ["-E", "-e", AKIA_ERE])),
        section_marker("aws-secret"),
        _either(_grep_files(in_dirs, ["-P", "-e", AWS_SECRET_PCRE]), _grep_files(in_dirs, ["-i", "-E", "-e", AWS_SECRET_ERE])),
        section_marker("machine-id-uninitialized"),
        command_line("grep -qsx uninitialized %s && printf 'yes\\0'", on_root(root, "/etc/machine-id")),
        section_marker("end"),
    ]
    # A missing directory is not an error; parse_errors sorts what the script complains about.
    return "; ".join(steps)


@dataclass(frozen=True)
class ScanRecord:
    """One file the scan printed: its section, path (without the root prefix), mode and size."""

    section: str
    path: str
    mode: int
    size: int


@dataclass
class ScanOutput:
    """The scan's output, parsed: records per section and the flags it printed."""

    records: list[ScanRecord] = field(default_factory=list)
    uid: str = ""
    machine_id_uninitialized: bool = False
    complete: bool = False



def parse_scan(stdout: str, root: str = "/") -> ScanOutput:
    """Parse :func:`scan_command`'s stdout (pure).

    Records are ``MODE\\tSIZE\\tPATH`` (mode in octal); paths lose the root prefix.
    """
    out = ScanOutput()
    for name, tokens in split_sections(stdout).items():
        if name == "uid":
            out.uid = tokens[0].strip() if tokens else ""
        elif name == "machine-id-uninitialized":
            out.machine_id_uninitialized = bool(tokens)
        elif name == "end":
            out.complete = True
        else:
            for token in tokens:
                mode, size, path = token.split("\t", 2)
                out.records.append(ScanRecord(name, off_root(root, path), int(mode, 8), int(size)))
    return out


_DENIED = re.compile(r"^[a-z]+: [‘'`]?(?P<path>/.*?)[’']?: Permission denied$")
_BENIGN = re.compile(r"No such file or directory$")


def parse_errors(stderr: str, root: str = "/") -> tuple[list[Finding], list[str]]:
    """Split the scan's stderr into ``unreadable`` findings and other (unexpected) error lines.

    Missing paths (a scanned directory that does not exist, a file removed during the
    scan) are not errors.
    """
    unreadable: list[Finding] = []
    other: list[str] = []
    for line in stderr.splitlines():
        line = line.strip()
        if not line or _BENIGN.search(line):
            continue
        m = _DENIED.match(line)
        if m:
            unreadable.append(Finding(off_root(root, m.group("path")), "unreadable", "permission denied: not scanned"))
        else:
            other.append(line)
    return unreadable, other


def findings_from_scan(scan: ScanOutput, root: str = "/", secrets: Sequence[str] = BUILD_SECRETS) -> list[Finding]:
    """Turn parsed scan records into findings (pure): classify, de-duplicate, add world-readable.

    Rules: a private key that is an SSH host key is reported as ``ssh-host-key`` only; a
    build secret is ``build-secret`` only when no other kind applies at its path; a file of
    a secret-bearing kind (except an SSH host *public* key) with the other-read bit set is
    also ``world-readable-secret``.
    """
    found: dict[tuple[str, str], Finding] = {}
    modes: dict[str, int] = {}
    for rec in scan.records:
        modes[rec.path] = rec.mode
        if rec.section == "names":
            kind = name_kind(rec.path, secrets)
            if kind is None:
                continue
            if kind == "machine-id" and rec.path == "/etc/machine-id" and scan.machine_id_uninitialized:
                continue
            detail = _name_detail(kind, rec.path, rec.size)
            if detail is not None:
                found.setdefault((rec.path, kind), Finding(rec.path, kind, detail))
        elif rec.section in CONTENT_SECTIONS:
            kind, detail = CONTENT_SECTIONS[rec.section]
            seen = found.get((rec.path, kind))
            if seen is not None and detail not in seen.detail.split("; "):
                detail = f"{seen.detail}; {detail}"
            found[(rec.path, kind)] = Finding(rec.path, kind, detail)
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
            result.append(Finding(path, "world-readable-secret", f"mode {modes[path]:04o}: readable by every user"))
    if scan.uid and scan.uid != "0" and root.rstrip("/") == "":
        result.append(Finding("/", "unreadable", f"ran as uid {scan.uid}, not root: files only root can read were not scanned"))
    return sorted(result, key=lambda f: (f.path, KINDS.index(f.kind) if f.kind in KINDS else len(KINDS)))


def packaged_command(root: str = "/") -> str:
    """The command that checks files (relative paths, NUL-separated on stdin) against dpkg's md5sums.

    Prints the matching ``var/lib/dpkg/info/PKG.md5sums:MD5  PATH`` lines.
    """
    return "; ".join(
        [
            command_line("cd %s", root if root.rstrip("/") else "/"),
            "xargs -0 -r md5sum -- 2>/dev/null | grep -HxF -f - var/lib/dpkg/info/*.md5sums 2>/dev/null",
            "true",
        ]
    )


def parse_packaged(stdout: str) -> dict[str, str]:
    """Parse :func:`packaged_command`'s output into ``{"/path": "package"}`` (pure)."""
    verified: dict[str, str] = {}
    for line in stdout.splitlines():
        source, sep, entry = line.partition(".md5sums:")
        if not sep or "  " not in entry:
            continue
        package = posixpath.basename(source).split(":")[0]
        rel = entry.split("  ", 1)[1]
        verified["/" + rel] = package
    return verified


# --- doing it --------------------------------------------------------------------------
def audit(
    target: Target,
    settings: Settings | None = None,
    root: str = "/",
    allow: Sequence[str] = (),
    timeout: float | None = 1800,
) -> AuditReport:
    """Scan the target's file system for secrets that must not be in a public image.

    Args:
        target: where to look (the builder over SSH, a sim container, ``local``).
        settings: for the cluster name and state directory of the per-build secrets.
        root: the image's root directory on the target (tests use a temporary tree).
        allow: entries ``GLOB`` or ``KIND:GLOB`` whose findings are reported as allowed
            instead (e.g. :data:`CLUSTER_KEYRINGS` where first boot rotates them).
        timeout: seconds before the scan is abandoned.

    Returns:
        The report; ``report.ok`` is False when anything was found. Use
        :func:`require_clean` to turn findings into :class:`AuditFailed`.

    Raises:
        AuditFailed: the scan did not complete, or reported errors other than
            unreadable or vanished files (the audit would not be trustworthy).
    """
    started = time.monotonic()
    secrets = build_secrets(settings)
    result = target.run(scan_command(root, secrets), check=False, timeout=timeout)
    scan = parse_scan(result.stdout, root)
    unreadable, errors = parse_errors(result.stderr, root)
    if not scan.complete or errors:
        tail = "\n".join((errors or result.stderr.strip().splitlines())[-10:])
        raise AuditFailed(
            f"The secrets scan on {target.name} did not run cleanly (exit {result.exit_code})"
            + (f":\n{tail}" if tail else ""),
            hint="the audit needs GNU find, grep, xargs and stat on the target, and root (or sudo)",
        )
    findings = findings_from_scan(scan, root, secrets) + unreadable
    allowed: list[Finding] = []

    packaged = sorted({f.path for f in findings if f.kind == "private-key" and f.path.startswith("/usr/")})
    if packaged:
        data = "".join(p.lstrip("/") + "\0" for p in packaged)
        verified = parse_packaged(target.run(packaged_command(root), stdin=data, check=False, timeout=timeout).stdout)
        for f in findings:
            if f.kind in ("private-key", "world-readable-secret") and f.path in verified:
                allowed.append(Finding(f.path, f.kind, f"shipped unmodified by package {verified[f.path]} (dpkg md5sum)"))
        findings = [f for f in findings if not (f.kind in ("private-key", "world-readable-secret") and f.path in verified)]

    kept: list[Finding] = []
    for f in findings:
        entry = allow_match(f, allow)
        if entry is None:
            kept.append(f)
        else:
            allowed.append(Finding(f.path, f.kind, f"allowed by {entry!r}"))
    return AuditReport(target.name, root, kept, sorted(allowed), time.monotonic() - started)
