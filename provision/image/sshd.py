"""The sshd policy of a public image: no password logins, root by key only (pure, plus one check on the target).

The scrub (:mod:`provision.image.scrub`) writes :data:`SSHD_DROPIN`, comments out every
weaker setting elsewhere (:func:`neutralise`, Match blocks included), makes sure the main
configuration includes the drop-in before any ``Match`` (:func:`includes_dropin`), and
then asks sshd itself (:func:`check_sshd`: ``sshd -T``) whether the policy holds.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re

from ..exceptions import ProvisionError
from ..target import Target

SSHD_MAIN = "/etc/ssh/sshd_config"
SSHD_DIR = "/etc/ssh/sshd_config.d"
SSHD_DROPIN = f"{SSHD_DIR}/50-ceph-openstack-ami.conf"
#: What a public image's sshd must say, and the values that are at least as strict.
SSHD_POLICY: dict[str, tuple[str, frozenset[str]]] = {
    "permitrootlogin": ("prohibit-password", frozenset({"no", "prohibit-password", "without-password", "forced-commands-only"})),
    "passwordauthentication": ("no", frozenset({"no"})),
    "kbdinteractiveauthentication": ("no", frozenset({"no"})),
    "challengeresponseauthentication": ("no", frozenset({"no"})),
}
_SSHD_SPELLING = {
    "permitrootlogin": "PermitRootLogin",
    "passwordauthentication": "PasswordAuthentication",
    "kbdinteractiveauthentication": "KbdInteractiveAuthentication",
}
NEUTRALISED = "# disabled by ceph-openstack-ami (public image, see 50-ceph-openstack-ami.conf):"


def render_sshd_dropin() -> str:
    """The drop-in that makes sshd refuse passwords and root passwords."""
    lines = [
        "# Written by ceph-openstack-ami (provision.scrub): an image that is public allows no",
        "# password logins, and root logs in with a key only. sshd keeps the first value it",
        "# reads and sshd_config includes this directory first, so these settings win.",
    ]
    lines += [f"{_SSHD_SPELLING[k]} {SSHD_POLICY[k][0]}" for k in _SSHD_SPELLING]
    return "\n".join(lines) + "\n"


_OPTION = re.compile(r"^\s*([A-Za-z]+)(?:\s*=\s*|\s+)(.*?)\s*$")


def _option(line: str) -> tuple[str, str] | None:
    """``(keyword lower-cased, first value unquoted)`` of a config line, or None for comments/blanks."""
    if line.lstrip().startswith("#"):
        return None
    m = _OPTION.match(line)
    if not m:
        return None
    value = m.group(2).split()[0] if m.group(2).split() else ""
    return m.group(1).lower(), value.strip("\"'")


def neutralise(text: str) -> str:
    """Comment out every setting weaker than :data:`SSHD_POLICY` (Match blocks included)."""
    out = []
    for line in text.splitlines(keepends=True):
        opt = _option(line)
        if opt and opt[0] in SSHD_POLICY and opt[1].lower() not in SSHD_POLICY[opt[0]][1]:
            out.append(f"{NEUTRALISED} {line.lstrip()}")
        else:
            out.append(line)
    return "".join(out)


def includes_dropin(main: str) -> bool:
    """True when ``main`` includes :data:`SSHD_DROPIN` before any ``Match`` block."""
    for line in main.splitlines():
        opt = _option(line)
        if opt is None:
            continue
        if opt[0] == "match":
            return False
        if opt[0] == "include":
            for pattern in line.split()[1:]:
                pattern = pattern.strip("\"'")
                full = pattern if pattern.startswith("/") else posixpath.join("/etc/ssh", pattern)
                if fnmatch.fnmatchcase(SSHD_DROPIN, full):
                    return True
    return False


def sshd_config_changes(files: dict[str, str]) -> dict[str, str]:
    """The sshd configuration files to (re)write, as ``{path: new text}`` (pure).

    Args:
        files: the current text of ``/etc/ssh/sshd_config`` and of each drop-in.

    Returns:
        Nothing when sshd is not installed (no main config). Otherwise our drop-in when it
        differs, each other file with a weaker setting commented out, and the main config
        with an ``Include`` of ``sshd_config.d`` prepended when it has none that counts.
    """
    if SSHD_MAIN not in files:
        return {}
    changes: dict[str, str] = {}
    want = render_sshd_dropin()
    if files.get(SSHD_DROPIN) != want:
        changes[SSHD_DROPIN] = want
    for path, text in files.items():
        if path == SSHD_DROPIN:
            continue
        new = neutralise(text)
        if path == SSHD_MAIN and not includes_dropin(new):
            has_include = any((_option(line) or ("",))[0] == "include" for line in new.splitlines())
            target = SSHD_DROPIN if has_include else f"{SSHD_DIR}/*.conf"
            new = f"# Added by ceph-openstack-ami (provision.scrub): the drop-ins' settings win.\nInclude {target}\n\n" + new
        if new != text:
            changes[path] = new
    return changes


def sshd_problems(effective: str) -> list[str]:
    """What ``sshd -T`` output still allows that the policy forbids (pure); empty when compliant."""
    seen: dict[str, str] = {}
    for line in effective.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            seen.setdefault(parts[0].lower(), parts[1].lower())
    problems = []
    for key in ("permitrootlogin", "passwordauthentication", "kbdinteractiveauthentication"):
        value = seen.get(key)
        if value is not None and value not in SSHD_POLICY[key][1]:
            problems.append(f"{_SSHD_SPELLING[key]} {value}")
    return problems


def check_sshd(target: Target) -> None:
    """Check with ``sshd -T`` that sshd refuses passwords and root passwords.

    ``sshd -T`` needs a host key: a throwaway one is made in a temporary directory and
    removed again.

    Raises:
        ProvisionError: sshd still allows what the policy forbids, or cannot say.
    """
    script = (
        "[ -d /run/sshd ] || mkdir -p -m 0755 /run/sshd; d=$(mktemp -d) || exit 1; "
        'ssh-keygen -q -t ed25519 -N "" -f "$d/k" >/dev/null && sshd -T -h "$d/k"; rc=$?; rm -rf "$d"; exit $rc'
    )
    result = target.run(script, check=False)
    if not result.ok:
        raise ProvisionError(
            f"sshd on {target.name} cannot check its configuration (exit {result.exit_code}): "
            + (result.stderr.strip().splitlines() or ["no output"])[-1],
            hint=f"fix the error above in {SSHD_MAIN} or {SSHD_DIR}",
        )
    problems = sshd_problems(result.stdout)
    if problems:
        raise ProvisionError(
            f"After the scrub, sshd on {target.name} still has {', '.join(problems)}",
            hint="look for these settings in Match blocks or in files included from outside sshd_config.d",
        )
