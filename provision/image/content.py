"""The secrets found by *content*: one grep pattern per section of the audit's scan, and the prefilter.

The audit reads every regular file of the image below its read bound (:data:`MAX_SCAN_BYTES`),
text and binary alike (``grep -a``: a key inside a database or an archive member stored
uncompressed is still found), in two passes: :data:`PREFILTER` (one ``grep`` over every
file, cheap literals and short patterns, case-insensitive) picks candidate files, then each
:class:`Section`'s own pattern runs over the candidates only. A section's pattern must
never match where the prefilter does not: every section's example in the tests goes
through both passes.

Pure data, plus the scrub's Python twins of the password patterns (:data:`PASSWORD_OPTION_RE`,
:data:`URL_PASSWORD_RE`, :data:`DJANGO_KEY_RE`). Nothing here is ever used to print what it matches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Content scans read files below this size; a larger file is reported as
#: ``unscanned-large-file`` unless it is of a kind the audit can justify skipping.
MAX_SCAN_BYTES = 8 * 1024 * 1024

_NL = r"(?:\\r)?(?:\\n|\r?\n)"  # a real newline, or an escaped one (a key inside JSON)
#: A PEM, OpenSSH or PGP private key: the header, optional RFC 1421 / armor headers, then base64.
PRIVATE_KEY_PCRE = (
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[ \t]*" + _NL
    + r'(?:[ \t"]*[A-Za-z-]+:[^\n\\]*' + _NL + r")*"
    + r'(?:[ \t"]*' + _NL + r")?"
    + r'[ \t"]*[A-Za-z0-9+/=]{32,}'
)
#: Without ``grep -P``: the header alone, at the end of a line or before an escaped newline.
PRIVATE_KEY_ERE = r"-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY( BLOCK)?-----[[:space:]]*($|\\n|\\r)"
#: ssh.com / SSH2 (RFC 4716 style) private key: the header, a few header lines, base64.
SSH2_KEY_PCRE = r"---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----[ \t]*\r?\n(?:[^\n]*\n){0,8}?[ \t]*[A-Za-z0-9+/=]{32,}"
SSH2_KEY_ERE = r"^---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----"
#: PuTTY's .ppk: the first line, then (a few lines on) its private part.
PUTTY_KEY_PCRE = r"(?m)^PuTTY-User-Key-File-[0-9]+: [^\n]*\n(?:[^\n]*\n)*?Private-Lines: [0-9]+"
PUTTY_KEY_ERE = r"^PuTTY-User-Key-File-[0-9]+: "
#: A cephx key in any form (keyring ``key = ``, JSON, an env file, ``--key=``, a libvirt
#: secret value): base64 of 28 bytes (type 1, creation time, length 16, the AES key), so
#: 40 characters: ``AQ``, one of ``A-D``, 35 more, ``==``.
CEPHX_ERE = r"(^|[^A-Za-z0-9+/])AQ[A-D][A-Za-z0-9+/]{35}=="
#: ``password = x``, ``admin_password=x``, ``password: x`` (YAML), ``export OS_PASSWORD=x``,
#: ``dbc_dbpass='x'``, ``memcache_secret_key = x``, ``SECRET_KEY=x`` (case-insensitive; not
#: in Python files, see :data:`PY_SECRET_ERE`). A value that starts with ``$`` is a shell or
#: environment reference (``password=${RET}`` in a package's scripts), not a secret; ``=>``
#: and ``==`` are code, and ``passwd:`` is nsswitch.conf's database name (``passwd`` takes ``=`` only).
OS_OPTION_ERE = (
    r"""^[[:space:]]*(export[[:space:]]+)?["']?[A-Za-z0-9_.-]*((password|passwd|dbpass|secret_key|shared_secret)["']?[[:space:]]*="""
    r"""|(password|secret_key|shared_secret)["']?[[:space:]]*:)[[:space:]]*([^[:space:]'"$=>]|'[^'$]|"[^"$])"""
)
#: ``OS_PASSWORD=x`` anywhere on a line that is not a comment (``Environment=OS_PASSWORD=x`` in
#: a unit, ``env OS_PASSWORD=x cmd`` in a crontab, an openrc anywhere).
OS_ENV_ERE = r"""^[[:space:]]*([^#[:space:]].*[^A-Za-z0-9_])?OS_PASSWORD[=]("[^"$]|'[^'$]|[^[:space:]"'$])"""
#: In Python: a password or shared secret given as a non-empty literal.
PY_SECRET_ERE = (
    r"""^[[:space:]]*[A-Za-z0-9_.]*(password|passwd|PASSWORD|PASSWD|Password|secret_key|shared_secret|SHARED_SECRET|client_secret)"""
    r"""[[:space:]]*=[[:space:]]*[bruBRU]{0,2}('[^']|"[^"])"""
)
#: ``SECRET_KEY = 'x...'``: a Django key given as a literal (an empty ``''`` is not one).
DJANGO_KEY_ERE = r"""^[[:space:]]*SECRET_KEY[[:space:]]*=[[:space:]]*['"][^'"]"""
#: A URL with ``user:password@`` on a line that is not a comment (``transport_url``,
#: ``connection``, pip's ``index-url``, ``DATABASE_URL=``, a ``.git-credentials`` line).
#: A password that starts like a template (``{``, ``%``, ``$``, ``<``, ``*``) is not one.
OS_URL_ERE = (
    r"""^[[:space:]]*([^#;[:space:]].*)?[A-Za-z][A-Za-z0-9+.-]*://[^/:@[:space:]"'<>]*:"""
    r"""[^/@[:space:]"'{}%$<>*][^/@[:space:]"']*@"""
)
AKIA_PCRE = r"(?<![A-Za-z0-9])(?:AKIA|ASIA)(?![A-Z0-9]*EXAMPLE)[A-Z0-9]{16}(?![A-Za-z0-9])"
AKIA_ERE = r"(^|[^A-Za-z0-9])(AKIA|ASIA)[A-Z0-9]{16}([^A-Za-z0-9]|$)"
#: ``aws_secret_access_key = x`` (INI, env), ``"SecretAccessKey": "x"`` (JSON from STS, credential_process).
AWS_SECRET_PCRE = (
    r"""(?i:aws_secret_access_key|secret_?access_?key)["']?\s*[=:]\s*["']?(?![A-Za-z0-9/+]*EXAMPLE)"""
    r"""[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"""
)
AWS_SECRET_ERE = r"""(aws_secret_access_key|secret_?access_?key)["']?[[:space:]]*[=:][[:space:]]*["']?[A-Za-z0-9/+]{40}"""
#: A Google Cloud credentials JSON (service account key, user or workload identity credentials).
GCP_ERE = r'''"type"[[:space:]]*:[[:space:]]*"(service_account|authorized_user|external_account|impersonated_service_account)"'''
#: An Azure service principal's (or any OAuth client's) secret: ``"clientSecret": "x"``, ``AZURE_CLIENT_SECRET=x``.
AZURE_ERE = r"""(clientSecret|client_secret|AZURE_CLIENT_SECRET)["']?[[:space:]]*[=:][[:space:]]*["']?[^[:space:]"',{}]"""
#: Registry credentials in a Docker/OCI ``config.json`` (an ``auth`` member holding base64 of user:password).
REGISTRY_ERE = r'''"(auth|identitytoken|registrytoken)"[[:space:]]*:[[:space:]]*"[^"]'''
#: npm's and yarn's tokens: ``//registry/:_authToken=x``, ``_auth = x``, ``_password = x``.
NPM_ERE = r"^[[:space:]]*([^=[:space:]]*:)?(_authToken|_auth|_password)[[:space:]]*=[[:space:]]*[^[:space:]]"
#: RabbitMQ's definitions (``rabbitmqctl export_definitions``): every user's password hash.
RABBIT_HASH_ERE = r'''"password_hash"[[:space:]]*:[[:space:]]*"[^"]'''
#: debconf's password store with an answer in it.
DEBCONF_ERE = r"^Value:[[:space:]]*[^[:space:]]"

#: The first pass: a file matching none of these matches no section (case-insensitive).
PREFILTER: tuple[str, ...] = (
    "PRIVATE KEY",
    "PuTTY-User-Key-File-",
    r"AQ[A-D][A-Za-z0-9+/]{35}==",
    r"""(password|passwd|dbpass|secret_key|shared_secret|client_?secret)["']?[[:space:]]*[=:]""",
    r"""://[^/:@[:space:]"'<>]*:[^/@[:space:]"'{}%$<>*][^/@[:space:]"']*@""",
    r"A[KS]IA[A-Z0-9]{16}",
    r"secret_?access_?key",
    r'"(service_account|authorized_user|external_account|impersonated_service_account)"',
    r'''"(auth|identitytoken|registrytoken)"[[:space:]]*:''',
    r"_auth",
    r'"password_hash"',
    r"^Value:",
)


@dataclass(frozen=True)
class Section:
    """One content pattern of the scan: its output section, the kind it finds, and how to grep.

    Attributes:
        name: the section marker in the scan's output.
        kind: the kind of finding (see :data:`provision.image.patterns.KINDS`).
        detail: what a finding says about the match (never the match).
        ere: grep arguments that need no ``-P`` (the fallback).
        pcre: grep arguments with ``-P``, used where grep has it.
        only: an ERE the candidate's path must match (``""``: any path).
        exclude: an ERE the candidate's path must not match.
    """

    name: str
    kind: str
    detail: str
    ere: tuple[str, ...]
    pcre: tuple[str, ...] = ()
    only: str = ""
    exclude: str = ""


_PY = r"\.py$"
SECTIONS: tuple[Section, ...] = (
    Section("private-key", "private-key", "PEM/OpenSSH/PGP private key",
            ("-E", "-e", PRIVATE_KEY_ERE), ("-z", "-P", "-e", PRIVATE_KEY_PCRE)),
    Section("ssh2-key", "private-key", "SSH2 (ssh.com) private key", ("-E", "-e", SSH2_KEY_ERE), ("-z", "-P", "-e", SSH2_KEY_PCRE)),
    Section("putty-key", "private-key", "PuTTY private key (.ppk)", ("-E", "-e", PUTTY_KEY_ERE), ("-z", "-P", "-e", PUTTY_KEY_PCRE)),
    Section("cephx", "cephx-keyring", "cephx key (AQ...==)", ("-E", "-e", CEPHX_ERE)),
    Section("os-option", "openstack-password", "password option with a value", ("-i", "-E", "-e", OS_OPTION_ERE), exclude=_PY),
    Section("os-env", "openstack-password", "OS_PASSWORD with a value", ("-E", "-e", OS_ENV_ERE)),
    Section("py-secret", "openstack-password", "password literal in Python", ("-E", "-e", PY_SECRET_ERE), only=_PY),
    Section("django-key", "openstack-password", "Django SECRET_KEY with a value", ("-E", "-e", DJANGO_KEY_ERE), only=_PY),
    Section("os-url", "openstack-password", "URL with a user:password@", ("-E", "-e", OS_URL_ERE)),
    Section("aws-key-id", "aws-credentials", "AWS access key id (AKIA...)", ("-E", "-e", AKIA_ERE), ("-P", "-e", AKIA_PCRE)),
    Section("aws-secret", "aws-credentials", "AWS secret access key with a value",
            ("-i", "-E", "-e", AWS_SECRET_ERE), ("-P", "-e", AWS_SECRET_PCRE)),
    Section("gcp", "gcp-credentials", "Google Cloud credentials JSON", ("-E", "-e", GCP_ERE)),
    Section("azure", "azure-credentials", "client secret (Azure service principal, OAuth client)", ("-E", "-e", AZURE_ERE), exclude=_PY),
    Section("registry", "client-credentials", "registry credentials (auth in a Docker/OCI config)", ("-E", "-e", REGISTRY_ERE)),
    Section("npm", "client-credentials", "npm/yarn token or password", ("-E", "-e", NPM_ERE)),
    Section("rabbit-hash", "password-hash", "password_hash in RabbitMQ definitions", ("-E", "-e", RABBIT_HASH_ERE)),
    Section("debconf", "openstack-password", "a password answered to debconf", ("-E", "-e", DEBCONF_ERE), only=r"/passwords\.dat$"),
)
#: Content sections by name.
CONTENT_SECTIONS: dict[str, Section] = {s.name: s for s in SECTIONS}

#: The scrub's Python twins of :data:`OS_OPTION_ERE`, :data:`OS_URL_ERE` and
#: :data:`DJANGO_KEY_ERE`: group 1 (and 2) keep everything but the secret, for ``re.sub``.
PASSWORD_OPTION_RE = re.compile(r"^(\s*[A-Za-z0-9_]*(?:password|passwd|dbpass|secret_key|shared_secret)\s*=\s*)\S.*$", re.M)
URL_PASSWORD_RE = re.compile(r"^(\s*[^#;\s][^=]*=.*?://[^/:@\s]*:)[^/@\s]+(@)", re.M)
DJANGO_KEY_RE = re.compile(r"""^(\s*SECRET_KEY\s*=\s*)(['"]).+$""", re.M)
