"""One planted example of every kind and format the secrets audit must name, for the unit and sim tiers.

Each :class:`Plant` is a file (path, bytes, mode) and the kinds the audit must report at
its path, no more and no fewer. Paths spread over the whole file system on purpose
(``/var/log``, ``/var/backups``, ``/usr/local``, ``/var/spool``, ``/var/mail``, ``/opt``,
``/srv``, ``/home``, ``/root``, ``/tmp``, ``/var/tmp``, ``/var/lib``, ``/etc``). Every
secret value holds :data:`MARK`, which must never appear in a report. Secret-looking data
is assembled at run time, so no file of this repository looks like it holds a real key.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass

#: In every planted secret value; a report that contains it leaked a secret.
MARK = "pl4nted" + "S3cret"
B64 = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun"
CEPHX = "AQ" + "BJmVxmAAAAABAAk3Qq5qB7Zl2sZ0Vf3Gc9xw=="
AKIA = "AKI" + "AQ7RZ4XN2KD5MWPLT"
ASIA = "ASI" + "AQ7RZ4XN2KD5MWPLU"
AWS_SECRET = "Zx9" + "f3kLmN0pQrStUvWxYz0123456789abcdEFGHi"
HASH = "$6$" + "s4lt$" + "Q" * 86


def pem(kind: str = "RSA ", body: str = B64, sep: str = "\n", headers: str = "") -> str:
    """A PEM-shaped private key (fake)."""
    begin = "-----BEGIN " + kind + "PRIVATE" + " KEY-----"
    return begin + sep + headers + body + sep + body[::-1] + sep + "-----END " + kind + "PRIVATE KEY-----" + sep


def pgp() -> str:
    """An armored PGP private key block (fake)."""
    return "-----BEGIN PGP " + "PRIVATE KEY BLOCK-----\nComment: planted\n\n" + B64 + "\n=abcd\n-----END PGP PRIVATE KEY BLOCK-----\n"


def putty() -> str:
    """A PuTTY .ppk private key (fake)."""
    return (
        "PuTTY-User-Key-File-" + "3: ssh-ed25519\nEncryption: none\nComment: planted\nPublic-Lines: 2\n"
        + B64 + "\n" + B64[:20] + "\nPrivate-Lines: 1\n" + B64 + "\nPrivate-MAC: 0123abcd\n"
    )


def ssh2() -> str:
    """An ssh.com / SSH2 private key (fake)."""
    return "---- BEGIN SSH2 " + 'ENCRYPTED PRIVATE KEY ----\nComment: "planted"\n' + B64 + "\n---- END SSH2 ENCRYPTED PRIVATE KEY ----\n"


@dataclass(frozen=True)
class Plant:
    """A file to plant and the kinds the audit must name at its path."""

    name: str
    path: str
    content: bytes
    kinds: frozenset[str]
    mode: int = 0o600


def _p(name: str, path: str, content: str | bytes, *kinds: str, mode: int = 0o600) -> Plant:
    data = content.encode() if isinstance(content, str) else content
    return Plant(name, path, data, frozenset(kinds), mode)


def _private_keys() -> list[Plant]:
    return [
        _p("pem-rsa", "/var/backups/old/server.key", pem("RSA "), "private-key"),
        _p("pem-openssh", "/home/admin/.ssh/id_ed25519", pem("OPENSSH "), "private-key"),
        _p("pem-ec", "/srv/app/ec.pem", pem("EC "), "private-key"),
        _p("pem-dsa", "/opt/legacy/dsa.key", pem("DSA "), "private-key"),
        _p("pem-pkcs8", "/usr/local/etc/app/key.pem", pem(""), "private-key"),
        _p("pem-encrypted", "/var/lib/app/enc.pem", pem("ENCRYPTED "), "private-key"),
        _p("pem-rfc1421-headers", "/var/mail/root", "From x\n\n" + pem("RSA ", headers="Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00FF\n\n"), "private-key"),
        _p("pem-in-json", "/var/tmp/cfg.json", '{"tls_key": "' + pem(sep="\\n") + '"}', "private-key"),
        _p("pem-in-binary", "/var/lib/app/store.db", b"SQLite format 3\x00\x01\x02" + pem("EC ").encode() + b"\x00\xff", "private-key"),
        _p("pgp", "/root/.gnupg/secret.asc", pgp(), "private-key"),
        _p("putty", "/home/admin/key.ppk", putty(), "private-key"),
        _p("ssh2", "/var/spool/keys/id_rsa_2048_a", ssh2(), "private-key"),
        _p("tls-by-name", "/etc/ssl/private/server.der", b"\x30\x82\x04\xa4\x02\x01\x00" + MARK.encode(), "private-key"),
    ]


def _logins() -> list[Plant]:
    return [
        _p("ssh-host-key", "/etc/ssh/ssh_host_ed25519_key", pem("OPENSSH "), "ssh-host-key"),
        _p("dropbear-host-key", "/etc/dropbear/dropbear_rsa_host_key", b"\x00\x00\x00\x07ssh-rsa" + MARK.encode(), "ssh-host-key"),
        _p("authorized-keys", "/root/.ssh/authorized_keys", "ssh-ed25519 AAAAC3Nza build-key\n", "authorized-keys"),
        _p("authorized-keys2", "/home/admin/.ssh/authorized_keys2", "ssh-rsa AAAAB3Nza build-key\n", "authorized-keys"),
        _p("bash-history", "/root/.bash_history", f"mysql -p{MARK}\n", "shell-history"),
        _p("python-history", "/home/admin/.python_history", "import os\n", "shell-history"),
        _p("psql-history", "/var/lib/postgresql/.psql_history", "\\du\n", "shell-history"),
        _p("mysql-history", "/root/.mysql_history", "show databases;\n", "shell-history"),
        _p("fish-history", "/home/admin/.local/share/fish/fish_history", "- cmd: ls\n", "shell-history"),
        _p("node-history", "/root/.node_repl_history", "1+1\n", "shell-history"),
        _p("shadow-hash", "/etc/shadow", f"root:{HASH}:19000:0:99999:7:::\nadmin:!:19000::::::\ndaemon:*:19000::::::\n", "password-hash", mode=0o640),
        _p("shadow-locked-hash", "/etc/gshadow", f"root:*::\nstaff:!{HASH}::\n", "password-hash", mode=0o640),
        _p("shadow-backup", "/var/backups/shadow.bak", f"bob:{HASH}:19000:0:99999:7:::\n", "password-hash"),
        _p("passwd-hash", "/etc/passwd", f"root:x:0:0:root:/root:/bin/bash\nlegacy:{HASH}:1001:1001::/home/legacy:/bin/sh\n",
           "password-hash", "world-readable-secret", mode=0o644),
        _p("opasswd", "/etc/security/opasswd", f"admin:1000:1:{HASH}\n", "password-hash"),
        _p("rabbitmq-definitions", "/var/backups/rabbit-definitions.json",
           '{"users": [{"name": "openstack", "password_hash": "' + MARK + '", "hashing_algorithm": "rabbit_password_hashing_sha256"}]}',
           "password-hash"),
    ]


def _cephx() -> list[Plant]:
    return [
        _p("cephx-keyring", "/etc/ceph/ceph.client.images.keyring", f"[client.images]\n\tkey = {CEPHX}\n", "cephx-keyring"),
        _p("cephx-commented", "/var/lib/ceph/old.keyring", f"# key = {CEPHX}\n", "cephx-keyring"),
        _p("cephx-json", "/var/lib/app/ceph.json", '{"entity": "client.x", "key": "' + CEPHX + '"}', "cephx-keyring"),
        _p("cephx-env", "/etc/default/rbd-app", f"CEPH_ARGS=--id app\nCEPH_KEY={CEPHX}\n", "cephx-keyring"),
        _p("cephx-command-line", "/usr/local/bin/map-rbd", f"#!/bin/sh\nrbd map --id x --key={CEPHX} pool/img\n", "cephx-keyring", mode=0o700),
        _p("cephx-libvirt-xml", "/var/tmp/secret.xml",
           f"<secret ephemeral='no' private='yes'><usage type='ceph'><name>client.volumes</name></usage><value>{CEPHX}</value></secret>\n",
           "cephx-keyring"),
        _p("cephx-bare-base64", "/var/lib/libvirt/qemu/copy.base64", CEPHX, "cephx-keyring"),
        _p("cephx-in-log", "/var/log/app/mount.log", f"2024-01-01 mount -o name=x,secret={CEPHX} mon:/ /mnt\n", "cephx-keyring"),
    ]


def _openstack() -> list[Plant]:
    return [
        _p("ini-password", "/etc/glance/glance-api.conf", f"[keystone_authtoken]\npassword = {MARK}\n", "openstack-password", mode=0o640),
        _p("ini-admin-password", "/etc/keystone/keystone.conf", f"[x]\nadmin_password={MARK}\n", "openstack-password", mode=0o640),
        _p("transport-url", "/etc/nova/nova.conf", f"[DEFAULT]\ntransport_url = rabbit://openstack:{MARK}@ctl:5672/\n", "openstack-password", mode=0o640),
        _p("connection-url", "/var/backups/cinder.conf.orig", f"[database]\nconnection = mysql+pymysql://cinder:{MARK}@127.0.0.1/cinder\n", "openstack-password"),
        _p("shared-secret-ini", "/etc/neutron/metadata_agent.ini", f"[DEFAULT]\nmetadata_proxy_shared_secret = {MARK}\n", "openstack-password", mode=0o640),
        _p("secret-key-option", "/etc/placement/extra.conf", f"[cache]\nmemcache_secret_key = {MARK}\n", "openstack-password", mode=0o640),
        _p("yaml-password", "/srv/deploy/vars.yml", f"db:\n  password: {MARK}\n", "openstack-password"),
        _p("env-password", "/opt/app/.env", f"DB_PASSWORD={MARK}\n", "openstack-password"),
        _p("dbconfig", "/etc/dbconfig-common/keystone.conf", f"dbc_dbuser='keystone'\ndbc_dbpass='{MARK}'\n", "openstack-password"),
        _p("openrc", "/home/admin/demo-openrc.sh", f"export OS_USERNAME=demo\nexport OS_PASSWORD='{MARK}'\n", "openstack-password"),
        _p("unit-environment", "/etc/systemd/system/app.service.d/env.conf", f"[Service]\nEnvironment=OS_PASSWORD={MARK}\n", "openstack-password"),
        _p("clouds-yaml", "/root/.config/openstack/clouds.yaml", f"clouds:\n  demo:\n    auth:\n      password: {MARK}\n", "openstack-password"),
        _p("secure-yaml", "/etc/openstack/secure.yaml", f"clouds:\n  demo:\n    auth:\n      password: '{MARK}'\n", "openstack-password"),
        _p("django-key", "/etc/openstack-dashboard/local_settings.py", f"SECRET_KEY = '{MARK}'\n", "openstack-password"),
        _p("python-literal", "/usr/local/lib/app/conf.py", f'DB_PASSWORD = "{MARK}"\n', "openstack-password"),
        _p("debconf", "/var/cache/debconf/passwords.dat", f"Name: keystone/admin-password\nTemplate: keystone/admin-password\nValue: {MARK}\nOwners: keystone\n",
           "openstack-password"),
        _p("erlang-cookie", "/var/lib/rabbitmq/.erlang.cookie", MARK.upper(), "openstack-secret", mode=0o400),
        _p("fernet-repository", "/etc/barbican/fernet-keys/0", MARK + "=" * 4, "openstack-secret"),
        _p("build-secret", "/var/lib/ceph-openstack-ami/secrets/admin-password", MARK, "build-secret"),
    ]


def _clients() -> list[Plant]:
    return [
        _p("my-cnf", "/root/.my.cnf", f"[client]\nuser=root\npassword={MARK}\n", "client-credentials"),
        _p("pgpass", "/home/admin/.pgpass", f"db:5432:*:app:{MARK}\n", "client-credentials"),
        _p("mylogin-cnf", "/root/.mylogin.cnf", b"\x00\x00\x00\x00" + MARK.encode(), "client-credentials"),
        _p("git-credentials", "/home/admin/.git-credentials", f"https://admin:{MARK}@git.example.com\n", "client-credentials"),
        _p("git-credential-store", "/root/.config/git/credentials", f"https://bot:{MARK}@github.com\n", "client-credentials"),
        _p("hgrc", "/home/admin/.hgrc", f"[auth]\nexample.prefix = hg.example.com\nexample.password = {MARK}\n", "client-credentials"),
        _p("svn-auth", "/home/admin/.subversion/auth/svn.simple/0123abcd", f"K 8\npassword\nV 10\n{MARK}\nEND\n", "client-credentials"),
        _p("docker-config", "/root/.docker/config.json", '{"auths": {"registry.example": {"auth": "' + MARK + '"}}}', "client-credentials"),
        _p("npmrc", "/home/admin/.npmrc", f"//registry.npmjs.org/:_authToken={MARK}\n", "client-credentials"),
        _p("pypirc", "/home/admin/.pypirc", f"[pypi]\nusername = __token__\npassword = {MARK}\n", "client-credentials"),
        _p("pip-conf", "/etc/pip.conf", f"[global]\nindex-url = https://u:{MARK}@pypi.example/simple\n", "client-credentials"),
        _p("netrc", "/root/.netrc", f"machine example.com login u password {MARK}\n", "client-credentials"),
        _p("netrc-windows-name", "/home/admin/_netrc", f"machine example.com login u password {MARK}\n", "client-credentials"),
    ]


def _clouds() -> list[Plant]:
    sa = '{"type": "service_account", "project_id": "p", "private_key_id": "k", "private_key": "' + pem("", sep="\\n") + '"}'
    return [
        _p("aws-credentials-file", "/home/admin/.aws/credentials", f"[default]\naws_access_key_id = {AKIA}\naws_secret_access_key = {AWS_SECRET}\n",
           "aws-credentials"),
        _p("aws-key-id-env", "/etc/default/uploader", f"AWS_ACCESS_KEY_ID={AKIA}\n", "aws-credentials"),
        _p("aws-secret-ini", "/var/lib/app/conf.ini", f"aws_secret_access_key = {AWS_SECRET}\n", "aws-credentials"),
        _p("aws-sts-json", "/tmp/sts.json", '{"Credentials": {"AccessKeyId": "' + ASIA + '", "SecretAccessKey": "' + AWS_SECRET + '"}}',
           "aws-credentials"),
        _p("aws-cli-cache", "/root/.aws/cli/cache/0123.json", "{}", "aws-credentials"),
        _p("gcp-service-account", "/srv/app/service-account.json", sa, "gcp-credentials", "private-key"),
        _p("gcp-adc", "/root/.config/gcloud/application_default_credentials.json", '{"type": "authorized_user", "refresh_token": "' + MARK + '"}',
           "gcp-credentials"),
        _p("azure-json", "/opt/app/azure.json", '{"clientId": "x", "clientSecret": "' + MARK + '"}', "azure-credentials"),
        _p("azure-env", "/etc/environment", f"AZURE_CLIENT_SECRET={MARK}\n", "azure-credentials"),
        _p("azure-cli-cache", "/root/.azure/msal_token_cache.json", "{}", "azure-credentials"),
    ]


def _state() -> list[Plant]:
    return [
        _p("mariadb-datadir", "/var/lib/mysql/mysql/global_priv.MAD", b"\xfe\xfe\x07\x01" + MARK.encode(), "service-database"),
        _p("rabbitmq-mnesia", "/var/lib/rabbitmq/mnesia/rabbit@cephdemo/rabbit_user.DCD", b"cXM\x00" + MARK.encode(), "service-database"),
        _p("ceph-mon-store", "/var/lib/ceph/mon/ceph-a/store.db/000012.sst", b"\x00rocksdb" + MARK.encode(), "service-database"),
        _p("compressed-backup", "/var/backups/etc-2024.tar.gz", gzip.compress(pem("RSA ").encode(), mtime=0), "unscanned-archive"),
        _p("journal", "/var/log/journal/0123abcd/system.journal", b"LPKSHHRH\x00" + MARK.encode(), "journal", mode=0o640),
        _p("machine-id", "/etc/machine-id", "0123456789abcdef0123456789abcdef\n", "machine-id", mode=0o444),
        _p("world-readable", "/srv/www/key.pem", pem("EC "), "private-key", "world-readable-secret", mode=0o644),
    ]


def plants() -> list[Plant]:
    """Every planted example, one per kind and format."""
    return [*_private_keys(), *_logins(), *_cephx(), *_openstack(), *_clients(), *_clouds(), *_state()]


def expected_path(p: Plant) -> str:
    """Where the audit reports a plant: a file in a service database is reported as its directory."""
    for db in ("/var/lib/mysql", "/var/lib/rabbitmq/mnesia", "/var/lib/ceph/mon/ceph-a/store.db"):
        if p.path.startswith(db + "/"):
            return db
    return p.path
