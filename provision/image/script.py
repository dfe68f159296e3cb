"""The shell-script pieces shared by the audit's scan and the scrub's observation.

Both run one script on the target that prints NUL-separated records in sections
(``@@NAME`` markers, :func:`section_marker`, read back with :func:`split_sections`), on an
image whose root may be a directory of the target (:func:`on_root`, :func:`off_root`),
and both start with the ``find`` of files that are secrets by name (:func:`names_command`).
Pure functions: they build commands and parse output; nothing here runs anything.
"""

from __future__ import annotations

from typing import Sequence

from ..target import command_line
from .patterns import BUILD_SECRETS, NAME_RULES, PRUNED, PSEUDO_FSTYPES

#: Starts a section of a script's output: ``@@NAME`` (a path always has a ``/``, a marker never).
_MARK = "@@"
#: ``find -printf`` format of a by-name record: ``MODE\\tSIZE\\tPATH\\0`` (mode in octal).
_PRINTF = "%m\\t%s\\t%p\\0"
#: Password fields that hold no password: locked without a hash, or no login at all.
_NO_PASSWORD = ("", "*", "!", "!*", "!!")
#: Prints ``ACCOUNTS\\tPATH`` for each password file with a hash (the accounts, comma-separated).
HASHES_AWK = (
    'BEGIN { split("' + " ".join(_NO_PASSWORD[1:]) + '", a, " "); for (i in a) none[a[i]] = 1; none[""] = 1 }'
    " { f = (FILENAME ~ /opasswd$/) ? $4 : $2; p = (FILENAME ~ /(^|\\/)passwd[^\\/]*$/) }"
    ' !(f in none) && !(p && f == "x") { n[FILENAME] = n[FILENAME] s[FILENAME] $1; s[FILENAME] = "," }'
    ' END { for (x in n) printf "%s\\t%s\\n", n[x], x }'
)


def on_root(root: str, path: str) -> str:
    """``path`` of the image as seen on the target: under ``root`` (``/`` adds nothing)."""
    base = root.rstrip("/")
    return base + path if base else path


def off_root(root: str, path: str) -> str:
    """The inverse of :func:`on_root`: a target path as the image's path."""
    base = root.rstrip("/")
    if base and (path == base or path.startswith(base + "/")):
        return path[len(base):] or "/"
    return path


def prune_expr(
    root: str, dirs: Sequence[str] = PRUNED, fstypes: Sequence[str] = PSEUDO_FSTYPES, extra: Sequence[str] = ()
) -> list[str]:
    """``find`` arguments that skip ``dirs`` of the image, mounts of ``fstypes`` and the target paths ``extra``."""
    tests = [("-path", on_root(root, d)) for d in dirs] + [("-path", p) for p in extra] + [("-fstype", t) for t in fstypes]
    return [*_any_of(tests), "-prune", "-o"]


def _any_of(tests: Sequence[tuple[str, str]]) -> list[str]:
    expr: list[str] = ["("]
    for i, (test, arg) in enumerate(tests):
        expr += (["-o"] if i else []) + [test, arg]
    return expr + [")"]


def name_tests(root: str, secrets: Sequence[str] = BUILD_SECRETS, kinds: Sequence[str] | None = None) -> list[str]:
    """``find`` tests (``( -name X -o -path Y ... )``) for the by-name rules of ``kinds`` (all by default) and the build secrets."""
    tests = [("-name" if test == "name" else "-path", glob if test == "name" or glob.startswith("*") else on_root(root, glob))
             for kind, test, glob in NAME_RULES if kinds is None or kind in kinds]
    if kinds is None or "build-secret" in kinds:
        tests += [("-path", on_root(root, g)) for g in secrets]
    return _any_of(tests)


def names_command(root: str = "/", secrets: Sequence[str] = BUILD_SECRETS, kinds: Sequence[str] | None = None) -> str:
    """The ``find`` that lists files which are secrets by name (of ``kinds``; all by default): ``MODE\\tSIZE\\tPATH\\0`` records."""
    start = root if root.rstrip("/") else "/"
    return command_line(["find", start, *prune_expr(root), "-type", "f", *name_tests(root, secrets, kinds), "-printf", _PRINTF])


def section_marker(name: str) -> str:
    """The command that starts a section of a scan's output (``@@NAME\\0``); see :func:`split_sections`."""
    return command_line(["printf", "%s\\0", _MARK + name])


def split_sections(stdout: str) -> dict[str, list[str]]:
    """Split NUL-separated output into ``{section: [tokens]}`` at ``@@NAME`` markers."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for token in stdout.split("\0"):
        if token.startswith(_MARK) and "/" not in token:
            current = sections.setdefault(token[len(_MARK):], [])
        elif current is not None and token != "":
            current.append(token)
    return sections
