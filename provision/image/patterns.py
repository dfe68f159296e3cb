"""What must not be in a public image: the kinds of finding and the files that are secrets by *name*.

Shared by the audit (:mod:`provision.image.audit`, which reports them) and the scrub
(:mod:`provision.image.scrub`, which removes what it can). Pure data and pure classifiers
by path (:func:`name_kind`, :func:`build_secrets`, :func:`database_dir`). The secrets found
by *content* are in :mod:`provision.image.content`.

One table, :data:`NAME_RULES`, says which files are secrets by their name: the audit's
``find`` tests are made from it (``-name`` for a base name, ``-path`` for a whole path) and
:func:`name_kind` classifies with the same globs (:func:`fnmatch.fnmatchcase`, whose
``*`` also matches ``/`` as ``find -path`` does), so the two cannot disagree.
"""

from __future__ import annotations

import fnmatch
import posixpath
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
    "openstack-secret",
    "password-hash",
    "client-credentials",
    "aws-credentials",
    "gcp-credentials",
    "azure-credentials",
    "service-database",
    "journal",
    "machine-id",
    "build-secret",
    "world-readable-secret",
    "unscanned-large-file",
    "unscanned-archive",
    "unreadable",
)

#: Under the state directory: the project's own secrets (``openstack/secrets.json`` is
#: where the OpenStack provisioning keeps the OpenStack passwords; made anew when missing;
#: ``cluster/*`` the controller's join-token records: another instance of the image must not
#: believe in tokens it never issued).
STATE_SECRETS: tuple[str, ...] = ("secrets/*", "openstack/secrets*.json", "cluster/*")

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
    # RabbitMQ's definitions: the hash of the broker user's password (each instance writes its own).
    "/etc/rabbitmq/definitions.json",
    # The dashboard package's own Django key store (made on first use; ours is per instance).
    "/var/lib/openstack-dashboard/secret-key/*",
    # systemd-creds' host key (made again on first use): credentials sealed with it on one
    # instance would open on every other.
    "/var/lib/systemd/credential.secret",
)

#: Virtual file systems, by path: never scanned (not part of any disk image).
PRUNED: tuple[str, ...] = ("/proc", "/sys", "/dev", "/run")
#: Mounts of these file system types hold no file of the image (kernel and runtime state),
#: wherever they are mounted: never scanned (``find -fstype``). tmpfs is *not* among them:
#: a tmpfs elsewhere than /run and /dev is scanned like a disk.
PSEUDO_FSTYPES: tuple[str, ...] = (
    "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "securityfs", "debugfs", "tracefs",
    "pstore", "bpf", "configfs", "fusectl", "mqueue", "hugetlbfs", "autofs", "binfmt_misc", "efivarfs",
    "rpc_pipefs", "nsfs", "selinuxfs",
)
#: The OpenStack services whose ``/etc/SERVICE/*.conf`` hold passwords.
OPENSTACK_SERVICES: tuple[str, ...] = ("keystone", "glance", "cinder", "nova", "neutron", "placement")
#: Service configuration files holding passwords, which the scrub empties; the first boot's
#: ``coa-openstack-secrets`` renders them anew with this instance's passwords before any service starts.
SERVICE_CONF_GLOBS: tuple[str, ...] = (
    *(f"/etc/{svc}/*.conf" for svc in OPENSTACK_SERVICES),
    "/etc/openstack-dashboard/local_settings.d/*.py",
)
#: Shell, REPL and database-client history files, by name, of any user.
HISTORY_FILES: tuple[str, ...] = (
    ".bash_history", ".zsh_history", ".zhistory", ".histfile", ".sh_history", ".ash_history", ".ksh_history",
    ".python_history", ".node_repl_history", ".irb_history", ".pry_history", ".Rhistory", ".gdb_history",
    ".lesshst", ".viminfo", ".mysql_history", ".psql_history", ".sqlite_history", ".rediscli_history",
    ".dbshell", ".mongosh_repl_history", "fish_history",
)
AUTHORIZED_KEYS_FILES: tuple[str, ...] = ("authorized_keys", "authorized_keys2")
#: Client credential files of common tools (database clients, VCS, netrc), by name: any
#: non-empty one is a finding. Files that hold a credential only sometimes (``.my.cnf``,
#: ``.npmrc``, ``.docker/config.json``, ...) are found by content, see :data:`CLIENT_CONFIG_FILES`.
CLIENT_CREDENTIAL_NAMES: tuple[str, ...] = (".pgpass", ".mylogin.cnf", ".git-credentials", ".netrc", "_netrc")
#: Configuration files of client tools: a password, token or ``user:password@`` URL found
#: in one by content is reported as ``client-credentials`` (not ``openstack-password``).
CLIENT_CONFIG_FILES: tuple[str, ...] = (
    ".my.cnf", "my.cnf", ".hgrc", "hgrc", ".pypirc", "pip.conf", "pip.ini", ".npmrc", "npmrc", ".yarnrc",
    ".gitconfig", ".s3cfg", ".boto", ".dockercfg",
)
#: The data directories of the image's databases (globs of the directory). Their files are
#: binary and hold password hashes and keys (MariaDB's users and the services' tables,
#: RabbitMQ's users, the monitor's cephx keys): reported by name, one finding per directory,
#: and not read by the content scan.
SERVICE_DATABASES: dict[str, str] = {
    "/var/lib/mysql": "MariaDB's data directory: its users' password hashes and the services' databases",
    "/var/lib/rabbitmq/mnesia": "RabbitMQ's database: its users' password hashes",
    "/var/lib/ceph/mon/*/store.db": "the Ceph monitor's store: every cephx key of the cluster",
    "/var/lib/postgresql/*/main": "PostgreSQL's data directory: its roles' password hashes",
}
#: Files whose password fields are read (by ``awk``, printing account names only): a field
#: that is not empty, ``*``, ``!``, ``!*`` or ``!!`` (nor ``x`` in a passwd file) is a
#: ``password-hash``. A locked hash (``!$6$...``) is one too: it is the hash of a real
#: password, which an offline attack can recover.
PASSWORD_FILE_NAMES: tuple[str, ...] = ("shadow", "shadow-", "gshadow", "gshadow-", "opasswd", "*shadow*.bak")
PASSWORD_FILE_PATHS: tuple[str, ...] = ("/etc/passwd", "/etc/passwd-", "/var/backups/passwd.bak")

#: By-name rules: ``(kind, test, glob)``, test ``name`` (base name) or ``path`` (whole path
#: of the image). First match wins: these, then the per-build secrets, then
#: :data:`NAME_RULES_AFTER`.
NAME_RULES_FIRST: tuple[tuple[str, str, str], ...] = (
    ("ssh-host-key", "path", "/etc/ssh/ssh_host_*"),
    ("ssh-host-key", "name", "ssh_host_*_key"),
    ("ssh-host-key", "name", "ssh_host_*_key.pub"),
    ("ssh-host-key", "path", "*/dropbear/dropbear_*_host_key"),
    *(("authorized-keys", "name", n) for n in AUTHORIZED_KEYS_FILES),
    *(("shell-history", "name", n) for n in HISTORY_FILES),
    ("shell-history", "path", "*/.ipython/profile_*/history.sqlite"),
    ("aws-credentials", "path", "*/.aws/credentials"),
    ("aws-credentials", "path", "*/.aws/cli/cache/*"),
    ("aws-credentials", "path", "*/.aws/sso/cache/*"),
    ("gcp-credentials", "path", "*/.config/gcloud/credentials.db"),
    ("gcp-credentials", "path", "*/.config/gcloud/access_tokens.db"),
    ("gcp-credentials", "path", "*/.config/gcloud/application_default_credentials.json"),
    ("gcp-credentials", "path", "*/.config/gcloud/legacy_credentials/*"),
    ("azure-credentials", "path", "*/.azure/accessTokens.json"),
    ("azure-credentials", "path", "*/.azure/msal_token_cache.*"),
    ("azure-credentials", "path", "*/.azure/service_principal_entries.*"),
    *(("client-credentials", "name", n) for n in CLIENT_CREDENTIAL_NAMES),
    ("client-credentials", "path", "*/.config/git/credentials"),
    ("client-credentials", "path", "*/.subversion/auth/*"),
    ("client-credentials", "path", "*/.svn/auth/*"),
)
#: By-name rules tried after the per-build secrets. ``password-file`` is internal (files
#: whose fields are checked); ``service-database`` globs are files *in* a database.
NAME_RULES_AFTER: tuple[tuple[str, str, str], ...] = (
    # Binary: every unit's log lines of the build (the console's admin password line too).
    ("journal", "path", "/var/log/journal/*"),
    ("machine-id", "path", "/etc/machine-id"),
    ("machine-id", "path", "/var/lib/dbus/machine-id"),
    ("private-key", "path", "/etc/ssl/private/*"),
    ("openstack-secret", "name", ".erlang.cookie"),
    ("openstack-secret", "path", "*/fernet-keys/*"),
    ("openstack-secret", "path", "*/credential-keys/*"),
    *(("service-database", "path", d + "/*") for d in SERVICE_DATABASES),
    *(("password-file", "name", n) for n in PASSWORD_FILE_NAMES),
    *(("password-file", "path", p) for p in PASSWORD_FILE_PATHS),
)
#: Every by-name rule (the audit's ``find`` tests).
NAME_RULES = NAME_RULES_FIRST + NAME_RULES_AFTER
#: Compressed files, by name: their content is not searched (a key in a ``.tar.gz`` backup would
#: not be seen), so each is a finding unless a package ships it or its magic shows it is not
#: compressed after all (dpkg's alternatives named ``x.1.gz`` are plain text, read as such).
ARCHIVE_NAMES: tuple[str, ...] = (
    "*.gz", "*.tgz", "*.xz", "*.txz", "*.zst", "*.bz2", "*.tbz2", "*.lz4", "*.lzma", "*.zip", "*.7z", "*.jar", "*.whl",
)

#: By-name kinds reported even when the file is empty.
REPORTED_WHEN_EMPTY = frozenset({"ssh-host-key"})

#: Kinds whose files hold a secret: such a file readable by every user is also reported.
SECRET_KINDS = frozenset(
    {
        "private-key", "ssh-host-key", "cephx-keyring", "openstack-password", "openstack-secret", "password-hash",
        "client-credentials", "aws-credentials", "gcp-credentials", "azure-credentials", "build-secret",
    }
)


def build_secrets(settings: Settings | None = None) -> tuple[str, ...]:
    """The globs of per-build secrets: :data:`BUILD_SECRETS`, and the same under this state dir."""
    globs = list(BUILD_SECRETS)
    if settings is not None:
        globs += [posixpath.join(settings.state_dir, g) for g in STATE_SECRETS]
    return tuple(dict.fromkeys(globs))


def _matches(test: str, glob: str, path: str) -> bool:
    return fnmatch.fnmatchcase(posixpath.basename(path) if test == "name" else path, glob)


def name_kind(path: str, secrets: Sequence[str] = BUILD_SECRETS) -> str | None:
    """The kind of a file that is a secret by its path alone, or None.

    A per-build secret (``secrets``) is ``build-secret`` (the scrub removes those) unless a
    rule of :data:`NAME_RULES_FIRST` says more; ``password-file`` means "check its fields".

    Args:
        path: the path as on the image (without the audit's root prefix).
        secrets: the per-build secret globs.
    """
    for kind, test, glob in NAME_RULES_FIRST:
        if _matches(test, glob, path):
            return kind
    if any(fnmatch.fnmatchcase(path, g) for g in secrets):
        return "build-secret"
    for kind, test, glob in NAME_RULES_AFTER:
        if _matches(test, glob, path):
            return kind
    return None


def database_dir(path: str) -> tuple[str, str] | None:
    """``(directory, what it is)`` of the service database holding ``path``, or None."""
    for glob, what in SERVICE_DATABASES.items():
        depth = glob.count("/")
        parts = path.split("/")
        if len(parts) > depth + 1:
            directory = "/".join(parts[: depth + 1])
            if fnmatch.fnmatchcase(directory, glob):
                return directory, what
    return None
