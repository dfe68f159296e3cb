"""What must not be in a public image: the kinds of finding, the paths and globs, the content patterns.

Shared by the audit (:mod:`provision.image.audit`, which reports them) and the scrub
(:mod:`provision.image.scrub`, which removes what it can). Pure data and two pure
classifiers by path (:func:`name_kind`, :func:`build_secrets`); the patterns are never
used to print what they match.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from typing import Sequence

from ..settings import Settings

#: Every kind of finding, in report order.
KINDS = (
    "private-key",
    "ssh-host-key",
    "authorized-keys",
    "shell-history",
    "cephx-keyring",
    "openstack-password",
    "aws-credentials",
    "machine-id",
    "build-secret",
    "world-readable-secret",
    "unreadable",
)

#: Under the state directory: the project's own secrets (``openstack/secrets.json`` is
#: where the OpenStack provisioning keeps the OpenStack passwords; made anew when missing).
STATE_SECRETS: tuple[str, ...] = ("secrets/*", "openstack/secrets*.json")

#: Per-build secrets: the scrub removes them and the audit reports them (kind
#: ``build-secret`` when no more specific kind applies). First-boot units regenerate
#: them per instance. Globs as for ``find -path`` and :func:`fnmatch.fnmatch` (``*``
#: also matches ``/``). Keystone's fernet and credential keys sign and encrypt tokens:
#: shared by every instance of a public image, anyone could forge tokens for all of them.
#: Libvirt's ``*.base64`` secret values are the cephx key of the volumes client.
#: Not here: cephx keyrings. ``provision.ceph.boot.rotate_keys`` rotates them at first
#: boot and needs the image's keyrings (client.admin's above all) to do it; the audit
#: reports them as ``cephx-keyring`` and :data:`provision.image.audit.CLUSTER_KEYRINGS`
#: allows them explicitly.
BUILD_SECRETS: tuple[str, ...] = (
    "/root/openrc",
    *(posixpath.join("/var/lib/ceph-openstack-ami", g) for g in STATE_SECRETS),
    "/etc/keystone/fernet-keys/*",
    "/etc/keystone/credential-keys/*",
    "/etc/libvirt/secrets/*.base64",
    # The dashboard package's own Django key store (made on first use; ours is per instance).
    "/var/lib/openstack-dashboard/secret-key/*",
)

#: Virtual file systems: never scanned.
PRUNED: tuple[str, ...] = ("/proc", "/sys", "/dev", "/run")
#: Also skipped by the private-key scan: published, signed, read-only snap images.
CONTENT_PRUNED: tuple[str, ...] = PRUNED + ("/snap",)
#: Where configuration and state live: scanned for cephx keys, AWS keys and openrc files.
SECRET_DIRS: tuple[str, ...] = ("/etc", "/root", "/home", "/var/lib", "/opt", "/srv", "/tmp", "/var/tmp")
#: The OpenStack services whose ``/etc/SERVICE/*.conf`` hold passwords.
OPENSTACK_SERVICES: tuple[str, ...] = ("keystone", "glance", "cinder", "nova", "neutron", "placement")
#: The OpenStack services' configuration directories (their ``*.conf`` are scanned for passwords).
SERVICE_CONF_DIRS: tuple[str, ...] = tuple(f"/etc/{s}" for s in OPENSTACK_SERVICES)
#: Service configuration files holding passwords, which the scrub empties; the first boot's
#: ``coa-openstack-secrets`` renders them anew with this instance's passwords before any service starts.
SERVICE_CONF_GLOBS: tuple[str, ...] = (
    *(f"/etc/{svc}/*.conf" for svc in OPENSTACK_SERVICES),
    "/etc/openstack-dashboard/local_settings.d/*.py",
)
#: The dashboard's settings (Python files) are scanned for a Django ``SECRET_KEY`` literal.
DASHBOARD_DIRS: tuple[str, ...] = ("/etc/openstack-dashboard",)
#: Shell and REPL history files, by name, of any user.
HISTORY_FILES: tuple[str, ...] = (
    ".bash_history",
    ".zsh_history",
    ".sh_history",
    ".ash_history",
    ".python_history",
    ".lesshst",
    ".viminfo",
    ".mysql_history",
    ".psql_history",
    ".sqlite_history",
)
AUTHORIZED_KEYS_FILES: tuple[str, ...] = ("authorized_keys", "authorized_keys2")
#: Content scans skip files this large or larger.
MAX_SCAN_BYTES = 8 * 1024 * 1024

#: Kinds whose files hold a secret: such a file readable by every user is also reported.
SECRET_KINDS = frozenset({"private-key", "ssh-host-key", "cephx-keyring", "openstack-password", "aws-credentials", "build-secret"})

# --- the patterns (never print what they match) -------------------------------------
_NL = r"(?:\\r)?(?:\\n|\r?\n)"  # a real newline, or an escaped one (a key inside JSON)
#: A PEM or OpenSSH private key: the header, optional RFC 1421 headers, then base64.
PRIVATE_KEY_PCRE = (
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[ \t]*" + _NL
    + r'(?:[ \t"]*[A-Za-z-]+:[^\n\\]*' + _NL + r")*"
    + r'(?:[ \t"]*' + _NL + r")?"
    + r'[ \t"]*[A-Za-z0-9+/=]{32,}'
)
#: Without ``grep -P``: the header alone, at the end of a line or before an escaped newline.
PRIVATE_KEY_ERE = r"-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY-----[[:space:]]*($|\\n|\\r)"
CEPHX_ERE = r"^[[:space:]]*key[[:space:]]*=[[:space:]]*AQ[A-Za-z0-9+/]{20,}"
#: ``password = x``, ``admin_password = x``, ``memcache_secret_key = x``, ...
OS_OPTION_ERE = r"^[[:space:]]*[A-Za-z0-9_]*(password|secret_key|shared_secret)[[:space:]]*=[[:space:]]*[^[:space:]]"
#: ``SECRET_KEY = 'x...'``: a Django key given as a literal (an empty ``''`` is not one).
DJANGO_KEY_ERE = r"""^[[:space:]]*SECRET_KEY[[:space:]]*=[[:space:]]*['"][^'"]"""
#: ``connection = mysql+pymysql://user:PASS@host``, ``transport_url = rabbit://user:PASS@host``.
OS_URL_ERE = r"^[[:space:]]*[^#;[:space:]][^=]*=.*://[^/:@[:space:]]*:[^/@[:space:]]+@"
OPENRC_ERE = r"""^[[:space:]]*(export[[:space:]]+)?OS_PASSWORD=("[^"]+"|'[^']+'|[^[:space:]"'])"""
CLOUDS_ERE = r"^[[:space:]]*password:[[:space:]]*[^[:space:]]"
AKIA_PCRE = r"(?<![A-Za-z0-9])(?:AKIA|ASIA)(?![A-Z0-9]*EXAMPLE)[A-Z0-9]{16}(?![A-Za-z0-9])"
AKIA_ERE = r"(^|[^A-Za-z0-9])(AKIA|ASIA)[A-Z0-9]{16}([^A-Za-z0-9]|$)"
AWS_SECRET_PCRE = (
    r"""(?i:aws_secret_access_key)["']?\s*[=:]\s*["']?(?![A-Za-z0-9/+]*EXAMPLE)[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"""
)
AWS_SECRET_ERE = r"""aws_secret_access_key["']?[[:space:]]*[=:][[:space:]]*["']?[A-Za-z0-9/+]{40}"""

#: The scrub's Python twins of :data:`OS_OPTION_ERE`, :data:`OS_URL_ERE` and
#: :data:`DJANGO_KEY_ERE`: group 1 (and 2) keep everything but the secret, for ``re.sub``.
PASSWORD_OPTION_RE = re.compile(r"^(\s*[A-Za-z0-9_]*(?:password|secret_key|shared_secret)\s*=\s*)\S.*$", re.M)
URL_PASSWORD_RE = re.compile(r"^(\s*[^#;\s][^=]*=.*?://[^/:@\s]*:)[^/@\s]+(@)", re.M)
DJANGO_KEY_RE = re.compile(r"""^(\s*SECRET_KEY\s*=\s*)(['"]).+$""", re.M)

#: Content sections of the scan: kind, and the detail said about a match.
CONTENT_SECTIONS: dict[str, tuple[str, str]] = {
    "private-key": ("private-key", "PEM/OpenSSH private key"),
    "cephx": ("cephx-keyring", "cephx secret (key = AQ...)"),
    "os-option": ("openstack-password", "password option with a value"),
    "os-url": ("openstack-password", "URL with a user:password@"),
    "openrc": ("openstack-password", "OS_PASSWORD with a value"),
    "clouds": ("openstack-password", "password: in a clouds.yaml"),
    "django-key": ("openstack-password", "Django SECRET_KEY with a value"),
    "aws-key-id": ("aws-credentials", "AWS access key id (AKIA...)"),
    "aws-secret": ("aws-credentials", "aws_secret_access_key with a value"),
}


def build_secrets(settings: Settings | None = None) -> tuple[str, ...]:
    """The globs of per-build secrets: :data:`BUILD_SECRETS`, and the same under this state dir."""
    globs = list(BUILD_SECRETS)
    if settings is not None:
        globs += [posixpath.join(settings.state_dir, g) for g in STATE_SECRETS]
    return tuple(dict.fromkeys(globs))


def name_kind(path: str, secrets: Sequence[str] = BUILD_SECRETS) -> str | None:
    """The kind of a file that is a secret by its path alone, or None.

    Args:
        path: the path as on the image (without the audit's root prefix).
        secrets: the per-build secret globs.
    """
    base = posixpath.basename(path)
    if path.startswith("/etc/ssh/ssh_host_"):
        return "ssh-host-key"
    if base in AUTHORIZED_KEYS_FILES:
        return "authorized-keys"
    if base in HISTORY_FILES:
        return "shell-history"
    if path.endswith("/.aws/credentials"):
        return "aws-credentials"
    if path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        return "machine-id"
    if any(fnmatch.fnmatchcase(path, g) for g in secrets):
        return "build-secret"
    return None
