"""Scrub: remove everything the builder leaves behind that must not be in a public image.

The last step before imaging. It removes the SSH host keys, every ``authorized_keys``
(the build key included), shell histories, the per-build secrets of
:data:`provision.image.patterns.BUILD_SECRETS`, the builder's logs and journal, temporary files and
package caches; empties ``/etc/machine-id``; cleans cloud-init's instance state; locks
root's password and replaces every password hash in ``/etc/shadow``, its backups and
``gshadow`` with ``!`` (:data:`PASSWORD_FILES`; ``usermod -L`` would keep the hash behind a
``!``); removes RabbitMQ's Erlang cookie once the broker is stopped; and makes sshd refuse
passwords and root passwords (the policy is :mod:`provision.image.sshd`).

It runs twice in a build (:func:`provision.image.prepare.prepare_image`): after provisioning,
and after the quiesce (:mod:`provision.image.quiesce`) for what the services wrote while
they ran and stopped.

How it is done: :func:`observe` runs one script on the target and parses what it prints
(paths, sizes, sshd's configuration; never a secret); :func:`plan` turns that into
:class:`Action` s (pure, tested as a table; ``dry_run`` falls out of it); :func:`scrub`
runs them. A clean host yields an empty plan, so a second run reports "unchanged".

What it deliberately leaves:

* Files the instance needs to regenerate what it must have: ``ssh-keygen`` (the first
  boot of each instance makes host keys: cloud-init's ``ssh`` module, on EC2 and in the
  sim), ``/etc/machine-id`` itself (empty, so systemd makes a new id on
  first boot), ``/var/log/journal`` and the log files packages expect (truncated, not
  removed), ``/var/lib/apt/lists/{lock,partial}``, and the ``/tmp`` entries of running
  services (``systemd-private-*``, X11 sockets: they belong to live units).
* cephx keyrings (``/etc/ceph/*.keyring``, the daemons' under ``/var/lib/ceph``): the
  first boot's ``provision.ceph.boot.rotate_keys`` needs them (client.admin's above all)
  to give every key a new value. The audit reports them; the build allows them with
  :data:`provision.image.audit.CLUSTER_KEYRINGS` once that rotation is in the image.
* Secrets it cannot know are build leftovers: a private key elsewhere, ``~/.aws/credentials``
  and other client or cloud credentials, passwords outside the OpenStack services'
  configuration files (those the build's own step empties, :class:`ServicePasswordsStep`). Deleting those silently would
  hide a provisioning bug (and break services); the audit (:mod:`provision.image.audit`)
  reports them instead.

After the scrub, new SSH connections to the builder fail (no host keys, no authorized
key): run it last, over the connection that is already open, and audit over that same
connection. On a live system the journal is moved to ``/run`` until the next boot
(``journalctl --relinquish-var``) and a syslog daemon is stopped, so the image carries
none of the builder's log entries and a second run finds nothing new to truncate.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Sequence

from ..exceptions import ProvisionError
from ..openstack.api import agent
from ..settings import Settings
from ..steps import StepResult
from ..target import Target, command_line
from .content import DJANGO_KEY_RE, PASSWORD_OPTION_RE, URL_PASSWORD_RE
from .patterns import BUILD_SECRETS, SERVICE_CONF_GLOBS, build_secrets, name_kind
from .script import HASHES_AWK, names_command, off_root, on_root, section_marker, split_sections
from .sshd import SSHD_DIR, SSHD_DROPIN, SSHD_MAIN, check_sshd, sshd_config_changes

JOURNAL_DIR = "/var/log/journal"
LOG_DIR = "/var/log"
TMP_DIRS = ("/tmp", "/var/tmp")
#: ``/tmp`` entries of running units and of the X11 socket directories made at boot.
TMP_KEEP = ("systemd-private-*", ".X11-unix", ".ICE-unix", ".XIM-unix", ".font-unix", ".Test-unix")
APT_LISTS = "/var/lib/apt/lists"
#: apt makes these itself (``auxfiles`` on ``apt-get clean``); their content goes.
APT_LISTS_KEEP = ("lock", "partial", "auxfiles")
_ROTATED = re.compile(r"(\.(gz|xz|bz2|zst|lz4|old)|\.[0-9]+)$")
#: Syslog daemons that append to /var/log: stopped (until the next boot) before it is truncated.
SYSLOG_UNITS = ("syslog.socket", "rsyslog.service", "syslog-ng.service")
#: By-name kinds (see :func:`provision.image.patterns.name_kind`) the scrub removes.
REMOVED_KINDS = ("build-secret", "shell-history", "authorized-keys", "ssh-host-key")
#: The password files whose hashes the scrub replaces with ``!`` (locked, no hash): the
#: audit reports any hash (a locked ``!$6$...`` too), here or in a copy elsewhere.
PASSWORD_FILES = (
    "/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/passwd", "/etc/passwd-",
    "/etc/security/opasswd", "/var/backups/shadow.bak", "/var/backups/gshadow.bak", "/var/backups/passwd.bak",
)
#: RabbitMQ's Erlang cookie: removed once the broker is stopped (its CLI needs it to stop
#: it); the first boot's ``coa-openstack-broker`` writes this instance's before the broker starts.
COOKIE_NAME = ".erlang.cookie"
BROKER_UNITS = ("rabbitmq-server.service",)


@dataclass(frozen=True)
class Action:
    """One change: a summary for the log and either a shell command or a file to write.

    ``path`` is the file's path on the image (the scrub's root is added when writing).
    """

    summary: str
    command: str | None = None
    path: str | None = None
    content: str | None = None
    check: bool = True


@dataclass
class Observed:
    """What :func:`observe` saw, with paths as on the image (no root prefix)."""

    names: dict[str, list[str]] = field(default_factory=dict)
    journal: list[str] = field(default_factory=list)
    logs: list[tuple[str, int]] = field(default_factory=list)
    tmp: list[str] = field(default_factory=list)
    apt: list[str] = field(default_factory=list)
    machine_id_size: int | None = None
    dbus_machine_id: bool = False
    cloud_init: bool = False
    cloud_init_state: bool = False
    root_password: str | None = None
    sshd_files: dict[str, str] = field(default_factory=dict)
    sshd: bool = False
    syslog: list[str] = field(default_factory=list)
    #: Password files with a hash in them: path -> the accounts (never a hash).
    hashes: dict[str, list[str]] = field(default_factory=dict)
    broker_active: bool = False


def password_locked(status: str | None) -> bool:
    """True when a shadow status ``FIRSTCHAR:LENGTH`` means no password login (``!``/``*`` prefix)."""
    if status is None:
        return True
    first, _, length = status.partition(":")
    return length.strip() not in ("", "0") and first in ("!", "*")


# --- observe ---------------------------------------------------------------------------
def _entries(directory: str, *predicates: str) -> str:
    """List ``directory``'s direct entries (``PATH\\0``) when it exists."""
    find = command_line(["find", directory, "-mindepth", "1", "-maxdepth", "1", *predicates, "-printf", "%p\\0"])
    return command_line("if [ -d %s ]; then ", directory) + find + "; fi"


def observe_command(root: str = "/", secrets: Sequence[str] = BUILD_SECRETS, live: bool = True) -> str:
    """The observation script (one round trip); read its output with :func:`parse_observation`."""
    r = lambda p: on_root(root, p)  # noqa: E731
    keep_tmp: list[str] = []
    for name in TMP_KEEP:
        keep_tmp += ["!", "-name", name]
    keep_lists: list[str] = []
    for name in APT_LISTS_KEEP:
        keep_lists += ["!", "-name", name]
    steps = [
        "export LC_ALL=C",
        section_marker("names"),
        names_command(root, secrets, (*REMOVED_KINDS, "openstack-secret")) + " 2>/dev/null",
        section_marker("journal"),
        _entries(r(JOURNAL_DIR)),
        section_marker("logs"),
        command_line("if [ -d %s ]; then ", r(LOG_DIR))
        + command_line(["find", r(LOG_DIR), "-path", r(JOURNAL_DIR), "-prune", "-o", "-type", "f", "-printf", "%s\\t%p\\0"])
        + "; fi",
        section_marker("tmp"),
        *[_entries(r(d), *keep_tmp) for d in TMP_DIRS],
        section_marker("apt"),
        _entries(r("/var/cache/apt"), "-type", "f", "-name", "*.bin"),
        _entries(r("/var/cache/apt/archives"), "-type", "f", "-name", "*.deb"),
        _entries(r("/var/cache/apt/archives/partial")),
        _entries(r(APT_LISTS), *keep_lists),
        *[_entries(r(f"{APT_LISTS}/{d}")) for d in APT_LISTS_KEEP if d != "lock"],
        section_marker("machine-id"),
        command_line("if [ -e %s ]; then stat --printf='%%s\\0' %s; fi", r("/etc/machine-id"), r("/etc/machine-id")),
        section_marker("dbus-machine-id"),
        command_line(
            "if [ -e %s ] || [ -L %s ]; then printf 'present\\0'; fi", r("/var/lib/dbus/machine-id"), r("/var/lib/dbus/machine-id")
        ),
        section_marker("root-password"),
        command_line("if [ -f %s ]; then ", r("/etc/shadow"))
        + command_line(["awk", "-F:", '$1 == "root" { printf "%s:%d", substr($2, 1, 1), length($2) }', r("/etc/shadow")])
        + "; printf '\\0'; fi",
        section_marker("password-hashes"),
        "for f in " + " ".join(command_line("%s", r(p)) for p in PASSWORD_FILES) + "; do [ -f \"$f\" ] && printf '%s\\0' \"$f\"; done | "
        + command_line(["xargs", "-0", "-r", "awk", "-F:", HASHES_AWK]) + " | tr '\\n' '\\0'",
        section_marker("sshd-files"),
        command_line("D=%s; for f in %s ", r(SSHD_DIR), r(SSHD_MAIN))
        + '"$D"/*.conf; do [ -f "$f" ] || continue; printf \'F%s\\0C\' "$f"; cat "$f"; printf \'\\0\'; done',
    ]
    if live:
        steps += [
            section_marker("cloud-init"),
            "if command -v cloud-init >/dev/null 2>&1; then printf 'installed\\0'; "
            "if [ -n \"$(ls -A /var/lib/cloud 2>/dev/null)\" ] || ls /var/log/cloud-init*.log >/dev/null 2>&1; "
            "then printf 'state\\0'; fi; fi",
            section_marker("sshd"),
            "if command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ]; then printf 'yes\\0'; fi",
            section_marker("syslog"),
            f"for u in {' '.join(SYSLOG_UNITS)}; do "
            "systemctl is-active --quiet \"$u\" 2>/dev/null && printf '%s\\0' \"$u\"; done",
            section_marker("broker"),
            f"for u in {' '.join(BROKER_UNITS)}; do systemctl is-active --quiet \"$u\" 2>/dev/null && printf 'active\\0'; done",
        ]
    steps.append(section_marker("end"))
    return "; ".join(steps)


def parse_observation(stdout: str, root: str = "/", secrets: Sequence[str] = BUILD_SECRETS) -> Observed:
    """Parse :func:`observe_command`'s stdout (pure).

    Raises:
        ProvisionError: the output is incomplete (the script did not run to its end).
    """
    sections = split_sections(stdout)
    if "end" not in sections:
        raise ProvisionError("The scrub's observation of the target did not complete", hint="see the target's shell and tools")
    s = lambda p: off_root(root, p)  # noqa: E731
    obs = Observed()
    for token in sections.get("names", []):
        path = s(token.split("\t", 2)[2])
        kind = name_kind(path, secrets)
        if kind in REMOVED_KINDS:
            obs.names.setdefault(kind, []).append(path)
        elif kind == "openstack-secret" and path.rsplit("/", 1)[-1] == COOKIE_NAME:
            obs.names.setdefault("erlang-cookie", []).append(path)
    obs.journal = [s(t) for t in sections.get("journal", [])]
    for token in sections.get("logs", []):
        size, path = token.split("\t", 1)
        obs.logs.append((s(path), int(size)))
    obs.tmp = [s(t) for t in sections.get("tmp", [])]
    obs.apt = [s(t) for t in sections.get("apt", [])]
    mid = sections.get("machine-id", [])
    obs.machine_id_size = int(mid[0]) if mid else None
    obs.dbus_machine_id = bool(sections.get("dbus-machine-id"))
    pw = sections.get("root-password")
    obs.root_password = pw[0].strip() if pw and pw[0].strip() else None
    files = sections.get("sshd-files", [])
    for name, content in zip(files[::2], files[1::2], strict=False):
        obs.sshd_files[s(name[1:])] = content[1:]
    obs.cloud_init = "installed" in sections.get("cloud-init", [])
    obs.cloud_init_state = "state" in sections.get("cloud-init", [])
    obs.sshd = bool(sections.get("sshd"))
    obs.syslog = list(sections.get("syslog", []))
    obs.broker_active = bool(sections.get("broker"))
    for token in sections.get("password-hashes", []):
        accounts, path = token.split("\t", 1)
        obs.hashes[s(path)] = accounts.split(",")
    for value in obs.names.values():
        value.sort()
    return obs


def observe(target: Target, settings: Settings | None = None, root: str = "/") -> Observed:
    """Look at what the scrub would remove (one command on the target)."""
    secrets = build_secrets(settings)
    live = root.rstrip("/") == ""
    result = target.run(observe_command(root, secrets, live), timeout=900)
    return parse_observation(result.stdout, root, secrets)


# --- plan (pure) -----------------------------------------------------------------------
def _some(paths: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f", ... (+{len(paths) - limit})" if len(paths) > limit else "")


def plan(obs: Observed, root: str = "/", live: bool = True) -> list[Action]:
    """The actions that make the observed host clean, in order; empty when it is (pure).

    Args:
        obs: what :func:`observe` saw.
        root: the image's root on the target (prefixed to every path acted on).
        live: the root is the running system: also use its tools (``journalctl``,
            ``cloud-init``, ``apt-get``, ``usermod``). Without, files are edited directly.
    """
    r = lambda p: on_root(root, p)  # noqa: E731
    actions: list[Action] = []

    def remove(paths: Sequence[str], summary: str, recursive: bool = False) -> None:
        if paths:
            flags = "-rf" if recursive else "-f"
            actions.append(Action(f"{summary}: {_some(paths)}", command_line(["rm", flags, "--", *[r(p) for p in paths]])))

    if live and obs.cloud_init and obs.cloud_init_state:
        actions.append(Action("cleaned cloud-init's instance state and logs", "cloud-init clean --logs --seed"))
    remove(obs.names.get("build-secret", []), "removed per-build secrets")
    remove(obs.names.get("shell-history", []), "removed shell histories")
    remove(obs.names.get("authorized-keys", []), "removed authorized keys")
    host_keys = obs.names.get("ssh-host-key", [])
    if host_keys:
        actions.append(
            Action(
                f"removed {len(host_keys)} SSH host key files (first boot makes new ones)",
                command_line(["rm", "-f", "--", *[r(p) for p in host_keys]]),
            )
        )
    for path, text in sorted(sshd_config_changes(obs.sshd_files).items()):
        summary = f"wrote {path}" if path == SSHD_DROPIN else f"edited {path} so the drop-in wins"
        actions.append(Action(summary, path=path, content=text))
    if not password_locked(obs.root_password):
        # sed, not usermod -L: that keeps the hash (``!$6$...``) and copies it to /etc/shadow-.
        sed = command_line(["sed", "-i", "-E", r"s/^root:[^:]*:/root:!:/", r("/etc/shadow")])
        actions.append(Action("locked root's password", sed))
    actions += hash_actions(obs.hashes, root)
    cookies = obs.names.get("erlang-cookie", [])
    if cookies and not (live and obs.broker_active):
        remove(cookies, "removed RabbitMQ's Erlang cookie (the broker makes a new one; first boot gives it this instance's)")
    remove(obs.tmp, "removed temporary files", recursive=True)
    if obs.apt:
        if live:
            actions.append(Action("apt-get clean", "apt-get clean", check=False))
        remove(obs.apt, "removed package caches", recursive=True)
    if obs.machine_id_size is None:
        mid = r("/etc/machine-id")
        actions.append(Action("created an empty /etc/machine-id", command_line(["install", "-m", "0444", "/dev/null", mid])))
    elif obs.machine_id_size > 0:
        actions.append(Action("emptied /etc/machine-id (a new id on first boot)", command_line(": > %s", r("/etc/machine-id"))))
    if obs.dbus_machine_id:
        actions.append(Action("removed /var/lib/dbus/machine-id", command_line(["rm", "-f", "--", r("/var/lib/dbus/machine-id")])))
    if live and obs.syslog:
        stop = command_line(["systemctl", "stop", *obs.syslog])
        actions.append(Action(f"stopped {', '.join(obs.syslog)} until the next boot (no more builder logs)", stop, check=False))
    rotated = [p for p, _ in obs.logs if _ROTATED.search(p)]
    current = [p for p, size in obs.logs if size > 0 and not _ROTATED.search(p)]
    remove(rotated, "removed rotated logs")
    if current:
        cmd = command_line(["truncate", "-c", "-s", "0", "--", *[r(p) for p in current]])
        actions.append(Action(f"truncated logs: {_some(current)}", cmd))
    if obs.journal:
        steps = []
        if live:
            steps.append("{ journalctl --relinquish-var || journalctl --rotate || true; } >/dev/null 2>&1")
        steps.append(command_line(["rm", "-rf", "--", *[r(p) for p in obs.journal]]))
        actions.append(Action(f"removed the journal ({len(obs.journal)} entries of {JOURNAL_DIR})", "; ".join(steps)))
    return actions


_ACCOUNT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*[$]?$")


def hash_actions(hashes: dict[str, list[str]], root: str = "/") -> list[Action]:
    """Replace every password hash of ``hashes`` (path -> accounts) with ``!``: locked, no hash (pure).

    ``opasswd`` (old passwords of pam_pwhistory) is emptied.
    """
    actions = []
    for path, accounts in sorted(hashes.items()):
        if path.endswith("opasswd"):
            cmd = command_line(": > %s", on_root(root, path))
        else:
            names = [a for a in accounts if _ACCOUNT.match(a)]  # anything else stays for the audit to report
            if not names:
                continue
            exprs = [e for name in names for e in ("-e", f"s/^{name.replace('.', '[.]')}:[^:]*:/{name}:!:/")]
            cmd = command_line(["sed", "-i", "-E", *exprs, on_root(root, path)])
        actions.append(Action(f"removed the password hashes of {', '.join(accounts)} in {path} (locked)", cmd))
    return actions


# --- do --------------------------------------------------------------------------------
def _write(target: Target, root: str, action: Action) -> None:
    """Write an Action's file, keeping the mode and owner of the file it replaces."""
    assert action.path is not None and action.content is not None
    real = on_root(root, action.path)
    own = target.file_state(real)
    like = own or target.file_state(on_root(root, SSHD_MAIN))
    mode = own.mode if own else 0o644
    owner, group = (like.owner, like.group) if like else ("root", "root")
    target.put(real, action.content, mode=mode, owner=owner, group=group)


def scrub(target: Target, settings: Settings | None = None, root: str = "/", dry_run: bool = False) -> StepResult:
    """Remove what must not be in a public image; idempotent (a clean host is "unchanged").

    Args:
        target: the builder (over SSH), a sim container, or ``local``.
        settings: for the cluster name and state directory of the per-build secrets.
        root: the image's root on the target; anything but ``/`` edits files only (no
            ``journalctl``, ``cloud-init``, ``apt-get``, ``usermod``, ``sshd -T``).
        dry_run: say what would be done, change nothing.

    Returns:
        ``changed`` and a one-line summary of what was done (paths and counts, never contents).

    Raises:
        CommandFailed: an action failed.
        ProvisionError: sshd would still accept passwords after the scrub.
    """
    started = time.monotonic()
    live = root.rstrip("/") == ""
    observed = observe(target, settings, root)
    actions = plan(observed, root, live)
    if dry_run:
        detail = "would: " + "; ".join(a.summary for a in actions) if actions else "already clean"
        return StepResult("scrub", False, detail, time.monotonic() - started)
    for action in actions:
        if action.command is not None:
            target.run(action.command, check=action.check, timeout=900)
        else:
            _write(target, root, action)
    if live and observed.sshd and SSHD_MAIN in observed.sshd_files:
        check_sshd(target)
    detail = "; ".join(a.summary for a in actions) if actions else "already clean: nothing to remove"
    return StepResult("scrub", bool(actions), detail, time.monotonic() - started)


class ScrubStep:
    """The scrub as a step for :func:`provision.steps.run_steps` (run it last, before imaging)."""

    name = "scrub"

    def __init__(self, root: str = "/", dry_run: bool = False) -> None:
        self.root = root
        self.dry_run = dry_run

    def apply(self, target: Target, settings: Settings) -> StepResult:
        """Run :func:`scrub` on ``target``."""
        return scrub(target, settings, self.root, self.dry_run)


# --- the build's OpenStack passwords ------------------------------------------------------
def blank_service_passwords(text: str) -> str:
    """The config text with every password option, every ``user:password@`` in a URL and a Django key emptied."""
    return DJANGO_KEY_RE.sub(r"\1''", URL_PASSWORD_RE.sub(r"\1\2", PASSWORD_OPTION_RE.sub(r"\1", text)))


class DemoServerStep:
    """Scrub step (while the services run): the builder's demo server and Nova key pair go.

    The server's config drive holds the builder's public key, and Nova would start the
    server again at an instance's first boot; every instance boots its own, with its own key.
    """

    name = "scrub.demo-server"

    def apply(self, target: Target, settings: Settings) -> StepResult:
        """Delete the demo server(s) and the key pair through Nova (``python3 -m provision.openstack forget-demo-server``)."""
        r = agent(target, "forget-demo-server")
        return StepResult(self.name, bool(r.get("changed")), str(r.get("detail", "")))


class ServicePasswordsStep:
    """Scrub step: empty the build's passwords in the OpenStack services' configuration files."""

    name = "scrub.service-passwords"

    def apply(self, target: Target, settings: Settings) -> StepResult:
        """Empty every password in the files of :data:`~provision.image.patterns.SERVICE_CONF_GLOBS`, keeping mode and owner."""
        listing = target.run("for f in " + " ".join(SERVICE_CONF_GLOBS) + '; do [ -f "$f" ] && echo "$f"; done; true').stdout
        blanked = []
        for path in listing.split():
            text = target.read(path).decode()
            new = blank_service_passwords(text)
            if new != text:
                state = target.file_state(path)
                assert state is not None
                target.put(path, new, mode=state.mode, owner=state.owner, group=state.group)
                blanked.append(path)
        if blanked:
            return StepResult(self.name, True, f"emptied the build's passwords in {', '.join(blanked)} (first boot writes new ones)")
        return StepResult(self.name, False, "no password left in the services' configuration")
