"""The audit's scan: one shell script over the whole file system, and the pure parsers of what it prints.

:func:`scan_command` builds the script (one round trip to the target), :func:`parse_scan`
reads its stdout and :func:`parse_errors` its stderr; nothing here runs anything.

The script makes one ``find`` walk from the image's root, pruning only the virtual file
systems (:data:`~provision.image.patterns.PRUNED` by path, mounts of the
:data:`~provision.image.patterns.PSEUDO_FSTYPES` wherever they are, and the read-only snap
images under ``/snap``, which are listed). Every regular file goes to at least one list
in a private temporary directory (``/dev/shm``, else ``$TMPDIR``; removed on exit):

* ``names``: the files that are secrets by name (:data:`~provision.image.patterns.NAME_RULES`);
* ``pw``: the password files whose fields ``awk`` checks (account names are printed, never a field);
* ``large``: the files at or over the read bound (not read; the audit justifies or reports them);
* ``archives``: compressed files by name (read as they are, but their members are not searched);
* ``content``: every other file, except those inside a service database (reported by name).

Then ``grep -a`` runs the prefilter over the ``content`` list and each content section of
:mod:`provision.image.content` over the candidates. Only paths, modes and sizes are
printed: no secret leaves the target. Needs GNU find, grep, xargs, stat and awk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from ..target import command_line
from .content import MAX_SCAN_BYTES, PREFILTER, SECTIONS, Section
from .patterns import ARCHIVE_NAMES, BUILD_SECRETS
from .script import HASHES_AWK, name_tests, off_root, on_root, prune_expr, section_marker, split_sections

#: ``stat`` format of a content match: ``MODE\\tSIZE\\tPATH\\0`` (mode in octal).
_STAT = "%a\\t%s\\t%n\\0"
#: ``find -fprintf`` format of a listed file: the same record.
_PRINTF = "%m\\t%s\\t%p\\0"
#: Stands for the scan's temporary directory in the arguments; replaced by ``"$T"`` after quoting.
_T = "@T@"
#: The temporary directory's name (so its own paths are never taken for the image's).
TMP_PREFIX = "coa-audit."
def _tmp(text: str) -> str:
    """A quoted command with the temporary directory's placeholder made ``"$T"``."""
    return text.replace(_T, '"$T"')


def _grep_section(section: Section, pcre: bool) -> str:
    """Candidates (filtered by path) | grep -la SECTION | stat: the section's records."""
    args = section.pcre if pcre and section.pcre else section.ere
    if section.only:
        source = command_line(["grep", "-zE", "--", section.only, f"{_T}/cand"])
    elif section.exclude:
        source = command_line(["grep", "-zvE", "--", section.exclude, f"{_T}/cand"])
    else:
        source = command_line(["cat", f"{_T}/cand"])
    grep = command_line(["xargs", "-0", "-r", "grep", "-laZ", *args, "--"])
    stat = command_line(["xargs", "-0", "-r", "stat", f"--printf={_STAT}", "--"])
    return _tmp(" | ".join([source, grep, stat]))


def _content_steps() -> list[str]:
    """The prefilter, then one step per content section (``-P`` where grep has it)."""
    prefilter = ["xargs", "-0", "-r", "grep", "-laZ", "-i", "-E", *[a for p in PREFILTER for a in ("-e", p)], "--"]
    steps = [_tmp(command_line(prefilter) + f" < {_T}/content > {_T}/cand")]
    for s in SECTIONS:
        steps.append(section_marker(s.name))
        if s.pcre:
            steps.append(f'if [ -n "$P" ]; then {_grep_section(s, True)}; else {_grep_section(s, False)}; fi')
        else:
            steps.append(_grep_section(s, False))
    return steps


def find_command(root: str, secrets: Sequence[str], max_bytes: int) -> str:
    """The one ``find`` walk that fills the lists (see the module docstring)."""
    start = root if root.rstrip("/") else "/"
    snaps = ["(", "-path", on_root(root, "/snap/*"), "-fstype", "squashfs", "-fprintf", f"{_T}/snaps", "%p\\0", "-prune", ")", "-o"]
    databases = name_tests(root, secrets, kinds=("service-database",))
    archives = ["("] + [a for i, n in enumerate(ARCHIVE_NAMES) for a in ((["-o"] if i else []) + ["-name", n])] + [")"]
    argv = [
        "find", start, *snaps, *prune_expr(root, extra=(_T,)), "-type", "f", "(",
        "(", *name_tests(root, secrets), "-fprintf", f"{_T}/names", _PRINTF, "-false", ")", "-o",
        "(", *archives, "-fprintf", f"{_T}/archives", _PRINTF, "-false", ")", "-o",
        "(", *name_tests(root, secrets, kinds=("password-file",)), "-fprint0", f"{_T}/pw", "-false", ")", "-o",
        *databases, "-o",
        "(", "-size", f"+{max_bytes - 1}c", "-fprintf", f"{_T}/large", _PRINTF, ")", "-o",
        "-fprint0", f"{_T}/content", ")",
    ]
    return _tmp(command_line(argv))


def scan_command(root: str = "/", secrets: Sequence[str] = BUILD_SECRETS, max_bytes: int = MAX_SCAN_BYTES) -> str:
    """The whole scan as one shell script (one round trip); read its output with :func:`parse_scan`.

    Args:
        root: the image's root on the target (``/``, or a directory in tests).
        secrets: the per-build secret globs.
        max_bytes: files this large or larger are listed as large, not read.
    """
    steps = [
        "export LC_ALL=C",
        "if printf ab | grep -qP 'a(?=b)' 2>/dev/null; then P=1; else P=; fi",
        f'T=$(mktemp -d /dev/shm/{TMP_PREFIX}XXXXXX 2>/dev/null || mktemp -d -t {TMP_PREFIX}XXXXXX) || exit 1',
        "trap 'rm -rf \"$T\"' EXIT",
        section_marker("uid"),
        'printf "%s\\0" "$(id -u)"',
        find_command(root, secrets, max_bytes),
        'F=$?',
        section_marker("find-exit"),
        'printf "%s\\0" "$F"',
        section_marker("names"),
        _tmp(f"cat {_T}/names"),
        section_marker("large"),
        _tmp(f"cat {_T}/large"),
        section_marker("snaps"),
        _tmp(f"cat {_T}/snaps"),
        section_marker("archive"),
        _tmp(f"cat {_T}/archives"),
        section_marker("password-hash"),
        _tmp(command_line(["xargs", "-0", "-r", "awk", "-F:", HASHES_AWK]) + f" < {_T}/pw | tr '\\n' '\\0'"),
        *_content_steps(),
        section_marker("machine-id-uninitialized"),
        command_line("grep -qsx uninitialized %s && printf 'yes\\0'", on_root(root, "/etc/machine-id")),
        section_marker("end"),
    ]
    return "; ".join(steps)


@dataclass(frozen=True)
class ScanRecord:
    """One file the scan printed: its section, path (without the root prefix), mode and size.

    Records of the ``password-hash`` section carry the accounts with a hash in ``accounts``.
    """

    section: str
    path: str
    mode: int
    size: int
    accounts: str = ""


@dataclass
class ScanOutput:
    """The scan's output, parsed: records per section and the flags it printed."""

    records: list[ScanRecord] = field(default_factory=list)
    uid: str = ""
    #: ``find``'s exit status (1 when it could not read something, which it says on stderr).
    find_exit: int | None = None
    machine_id_uninitialized: bool = False
    complete: bool = False
    #: Read-only snap images under /snap that were not scanned (their mount points).
    snaps: list[str] = field(default_factory=list)


def parse_scan(stdout: str, root: str = "/") -> ScanOutput:
    """Parse :func:`scan_command`'s stdout (pure).

    Records are ``MODE\\tSIZE\\tPATH`` (mode in octal); paths lose the root prefix.

    Raises:
        ValueError: a record does not parse (the output is damaged: never trusted).
    """
    out = ScanOutput()
    for name, tokens in split_sections(stdout).items():
        if name == "uid":
            out.uid = tokens[0].strip() if tokens else ""
        elif name == "find-exit":
            out.find_exit = int(tokens[0]) if tokens else None
        elif name == "machine-id-uninitialized":
            out.machine_id_uninitialized = bool(tokens)
        elif name == "end":
            out.complete = True
        elif name == "snaps":
            out.snaps = [off_root(root, t) for t in tokens]
        elif name == "password-hash":
            for token in tokens:
                accounts, path = token.split("\t", 1)
                out.records.append(ScanRecord(name, off_root(root, path), 0, 0, accounts))
        else:
            for token in tokens:
                mode, size, path = token.split("\t", 2)
                out.records.append(ScanRecord(name, off_root(root, path), int(mode, 8), int(size)))
    return out


_ERROR = re.compile(r"^(?P<tool>[a-z0-9_.-]+): (?:cannot \w+ )?[‘'`\"]?(?P<path>/.*?)[’'\"]?: (?P<message>[^:]+)$")
_VANISHED = "No such file or directory"


@dataclass(frozen=True)
class ScanError:
    """A file the scan could not read: where (image path) and the tool's message."""

    path: str
    message: str


def parse_errors(stderr: str, root: str = "/") -> tuple[list[ScanError], list[str]]:
    """Split the scan's stderr into files that could not be read and other (unexpected) error lines.

    A file or directory that vanished during the scan is not an error; one the tools could
    not read (permission, I/O error, a limit of grep) is, and so is anything about the
    scan's own temporary files or any line that names no path.
    """
    unreadable: list[ScanError] = []
    other: list[str] = []
    for line in stderr.splitlines():
        line = line.strip()
        if not line:
            continue
        m = _ERROR.match(line)
        if not m or TMP_PREFIX in m.group("path"):
            other.append(line)
        elif m.group("message").strip() != _VANISHED:
            unreadable.append(ScanError(off_root(root, m.group("path")), m.group("message").strip()))
    return unreadable, other

