"""MariaDB and RabbitMQ, the infrastructure every service uses: their drop-ins, the databases
and the broker user planned from what is observed (tested as tables), and the commands that
apply the plans, start them and wait for them.

Both listen on the instance only (MariaDB on its socket, RabbitMQ on loopback); no
password ever goes on a command line (SQL and passwords travel on stdin).
"""

from __future__ import annotations

import base64
import hashlib
import json
import posixpath
from dataclasses import dataclass
from typing import Any, Mapping

from ..exceptions import ConfigError
from ..settings import Settings
from ..steps import Log, outcome
from ..systemd import bounded, ensure_running, wait_for
from ..target import Result, Target
from .ini import RABBIT_USER, FileSpec, managed, render_ini
from .profile import OpenStackProfile
from .secrets import Secrets, require_secrets

#: Seconds a ``*-manage`` command (and Keystone's bootstrap) may run unless told otherwise.
MANAGE_TIMEOUT_S = 180
ERLANG_COOKIE = "/var/lib/rabbitmq/.erlang.cookie"
#: The broker's configuration: it loads :data:`RABBIT_DEFINITIONS` at every start.
RABBIT_CONF = "/etc/rabbitmq/rabbitmq.conf"
#: User ``openstack`` (this instance's password hash), vhost ``/`` and its permissions, as
#: RabbitMQ's definitions: the broker imports them when it starts, so a new password needs no
#: ``rabbitmqctl`` and no restart (a per-instance secret: removed from the image).
RABBIT_DEFINITIONS = "/etc/rabbitmq/definitions.json"
#: Database -> the commands, as (service user, argv), that create its schema (each service module has its own).
SchemaCommands = dict[str, list[tuple[str, list[str]]]]


def render_mariadb_cnf(settings: Settings) -> str:
    """MariaDB drop-in: loopback only, small buffers (the services use the local socket)."""
    return render_ini(
        managed(),
        [
            (
                "mysqld",
                [
                    ("bind-address", "127.0.0.1"),
                    ("skip-name-resolve", "ON"),
                    ("innodb_buffer_pool_size", f"{settings.openstack.mariadb_buffer_pool_mib}M"),
                    ("performance_schema", "OFF"),
                    ("max_connections", 200),
                ],
            )
        ],
    )


def render_rabbitmq_env() -> str:
    """rabbitmq-env.conf: a node name that does not follow the host name; loopback listeners only."""
    return (
        managed() +
        "# rabbit@localhost: the node (and its database directory) keep their name on any host name.\n"
        "NODENAME=rabbit@localhost\n"
        "NODE_IP_ADDRESS=127.0.0.1\n"
        'SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"\n'
    )


def render_rabbitmq_conf() -> str:
    """rabbitmq.conf: import :data:`RABBIT_DEFINITIONS` at every start (the user and its password)."""
    return (
        managed() +
        "# This instance's user and password, imported at every start (written before the first one).\n"
        f"load_definitions = {RABBIT_DEFINITIONS}\n"
    )


def render_rabbit_definitions(password: str) -> str:
    """RabbitMQ definitions: user ``openstack`` with ``password``'s sha256 hash, all rights on ``/``.

    The salt is derived from the password, so the same password renders the same file (a
    second run changes nothing); it protects no other secret (the password is 32 random
    characters of this instance).
    """
    salt = hashlib.sha256(b"ceph-openstack-ami rabbit salt:" + password.encode()).digest()[:4]
    defs = {
        "users": [{"name": RABBIT_USER, "password_hash": rabbit_password_hash(password, salt),
                   "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []}],
        "vhosts": [{"name": "/"}],
        "permissions": [{"user": RABBIT_USER, "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}],
    }
    return json.dumps(defs, indent=2, sort_keys=True) + "\n"


#: (database, its user, the Secrets field holding the user's password). Nova's three databases share one user.
DATABASES: tuple[tuple[str, str, str], ...] = (
    ("keystone", "keystone", "keystone_db"),
    ("glance", "glance", "glance_db"),
    ("cinder", "cinder", "cinder_db"),
    ("placement", "placement", "placement_db"),
    ("nova_api", "nova", "nova_db"),
    ("nova", "nova", "nova_db"),
    ("nova_cell0", "nova", "nova_db"),
    ("neutron", "neutron", "neutron_db"),
)


def sql_string(value: str) -> str:
    """A MariaDB single-quoted string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sql_ident(name: str) -> str:
    """A backquoted identifier (letters, digits and underscores only)."""
    if not name or not all(c.isalnum() or c == "_" for c in name):
        raise ConfigError(f"Invalid SQL identifier {name!r}")
    return f"`{name}`"


def mysql_native_hash(password: str) -> str:
    """The ``mysql_native_password`` hash MariaDB stores (``*`` + upper hex SHA1(SHA1(pw)))."""
    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()


#: Gathers what :func:`plan_database` needs, as tab-separated rows (run as root on the socket).
OBSERVE_DATABASE_SQL = (
    "SELECT 'db', SCHEMA_NAME, '' FROM information_schema.SCHEMATA;\n"
    "SELECT 'user', User, Password FROM mysql.user WHERE Host = 'localhost';\n"
    "SELECT 'grant', Db, User FROM mysql.db WHERE Host = 'localhost';\n"
)


@dataclass(frozen=True)
class DbObserved:
    """Databases, local users' password hashes and database grants, as MariaDB reports them."""

    databases: frozenset[str]
    users: Mapping[str, str]
    grants: frozenset[tuple[str, str]]


def parse_database_observation(text: str) -> DbObserved:
    """Parse the ``mysql -N -B`` output of :data:`OBSERVE_DATABASE_SQL`."""
    dbs: set[str] = set()
    users: dict[str, str] = {}
    grants: set[tuple[str, str]] = set()
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            parts += [""] * (3 - len(parts))
        kind, a, b = parts[0], parts[1], parts[2]
        if kind == "db":
            dbs.add(a)
        elif kind == "user":
            users[a] = b
        elif kind == "grant":
            grants.add((a.replace("\\_", "_"), b))
    return DbObserved(frozenset(dbs), users, frozenset(grants))


def plan_database(observed: DbObserved, sec: Secrets) -> tuple[list[str], list[str]]:
    """SQL statements that make the databases, users, passwords and grants match ``sec``.

    Returns:
        (statements, what): ``what`` names each change without any secret; both empty when
        nothing differs.
    """
    sql: list[str] = []
    what: list[str] = []
    users_done: set[str] = set()
    for db, name, attr in DATABASES:
        password = getattr(sec, attr)
        user = f"{sql_string(name)}@'localhost'"
        if db not in observed.databases:
            sql.append(f"CREATE DATABASE {sql_ident(db)} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;")
            what.append(f"database {db}")
        if name not in users_done:
            users_done.add(name)
            if name not in observed.users:
                sql.append(f"CREATE USER {user} IDENTIFIED BY {sql_string(password)};")
                what.append(f"user {name}")
            elif observed.users[name] != mysql_native_hash(password):
                sql.append(f"ALTER USER {user} IDENTIFIED BY {sql_string(password)};")
                what.append(f"password of {name}")
        if (db, name) not in observed.grants:
            sql.append(f"GRANT ALL PRIVILEGES ON {sql_ident(db)}.* TO {user};")
            what.append(f"grant on {db} to {name}")
    return sql, what


def rabbit_password_hash(password: str, salt: bytes) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + sha256(salt + password))."""
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def rabbit_password_matches(stored: str, password: str) -> bool:
    """True when a stored sha256 RabbitMQ hash is of ``password``."""
    try:
        raw = base64.b64decode(stored, validate=True)
    except (ValueError, TypeError):
        return False
    return len(raw) == 36 and rabbit_password_hash(password, raw[:4]) == stored


def plan_rabbit(definitions: Mapping[str, Any], password: str) -> list[str]:
    """What to do so user ``openstack`` (password, all permissions on ``/``) is the only user.

    Returns a list of actions: ``add`` / ``password`` / ``permissions`` / ``delete:NAME``.
    """
    users = {u.get("name"): u for u in definitions.get("users", [])}
    actions = []
    me = users.get(RABBIT_USER)
    if me is None:
        actions.append("add")
    elif not rabbit_password_matches(str(me.get("password_hash", "")), password):
        actions.append("password")
    perms = [p for p in definitions.get("permissions", []) if p.get("user") == RABBIT_USER and p.get("vhost") == "/"]
    if me is None or not perms or any(perms[0].get(k) != ".*" for k in ("configure", "write", "read")):
        actions.append("permissions")
    actions += [f"delete:{name}" for name in sorted(users) if name != RABBIT_USER]
    return actions


def mysql(target: Target, sql: str, check: bool = True) -> Result:
    """Run SQL (fed on stdin, never on the command line) as MariaDB's root over the local socket."""
    return target.run(bounded(["mysql", "--protocol=socket", "-N", "-B"], 120), check=check, stdin=sql)


def wait_mysql(target: Target, timeout: float = 120) -> float:
    """Wait until MariaDB answers on its socket."""
    return wait_for("MariaDB to answer", lambda: mysql(target, "SELECT 1;", check=False).ok, timeout)


def rabbitmqctl(target: Target, *args: str, stdin: str | None = None, check: bool = True, seconds: int = 60) -> Result:
    """``rabbitmqctl ARGS`` (passwords go on stdin), bounded."""
    return target.run(bounded(["rabbitmqctl", *args], seconds), check=check, stdin=stdin)


def wait_rabbit(target: Target, timeout: float = 180) -> float:
    """Wait until the RabbitMQ node has booted."""
    return wait_for("RabbitMQ to start", lambda: rabbitmqctl(target, "-q", "await_startup", "--timeout", "10", check=False, seconds=30).ok, timeout)


def manage(target: Target, user: str, argv: list[str], seconds: int = MANAGE_TIMEOUT_S, stdin: str | None = None) -> Result:
    """Run a ``*-manage`` command as the service's user (root-owned logs would stop the service later)."""
    return target.run(bounded(["runuser", "-u", user, "--", *argv], seconds), stdin=stdin)


def ensure_database(target: Target, settings: Settings, sec: Secrets) -> list[str]:
    """Databases keystone/glance/cinder with local users whose passwords are ``sec``'s; what changed."""
    observed = parse_database_observation(mysql(target, OBSERVE_DATABASE_SQL).stdout)
    sql, what = plan_database(observed, sec)
    if sql:
        mysql(target, "\n".join(sql + ["FLUSH PRIVILEGES;"]) + "\n")
    return what


def table_count(target: Target, database: str) -> int:
    """How many tables ``database`` holds (0 before its schema was made)."""
    out = mysql(target, f"SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{database}';\n").stdout
    return int(out.strip() or 0)


def ensure_rabbit(target: Target, sec: Secrets) -> list[str]:
    """User ``openstack`` with this instance's password and all rights on ``/``; no other user."""
    defs = json.loads(rabbitmqctl(target, "-q", "export_definitions", "-").stdout or "{}")
    done = []
    for action in plan_rabbit(defs, sec.rabbit):
        if action == "add":
            rabbitmqctl(target, "add_user", RABBIT_USER, stdin=sec.rabbit + "\n")
            done.append(f"added user {RABBIT_USER}")
        elif action == "password":
            rabbitmqctl(target, "change_password", RABBIT_USER, stdin=sec.rabbit + "\n")
            done.append(f"new password for {RABBIT_USER}")
        elif action == "permissions":
            rabbitmqctl(target, "set_permissions", "-p", "/", RABBIT_USER, ".*", ".*", ".*")
            done.append(f"permissions of {RABBIT_USER}")
        elif action.startswith("delete:"):
            rabbitmqctl(target, "delete_user", action.split(":", 1)[1])
            done.append(f"deleted user {action.split(':', 1)[1]}")
    return done


def broker_files(sec: Secrets, broker_unit: str) -> list[FileSpec]:
    """What the broker reads at its start: the Erlang cookie, the definitions and the configuration that loads them."""
    return [
        FileSpec(ERLANG_COOKIE, sec.erlang_cookie, 0o400, "rabbitmq", "rabbitmq", (broker_unit,)),
        FileSpec(RABBIT_DEFINITIONS, render_rabbit_definitions(sec.rabbit), 0o640, "root", "rabbitmq", (broker_unit,)),
        FileSpec(RABBIT_CONF, render_rabbitmq_conf(), 0o644, "root", "root", (broker_unit,)),
    ]


def ensure_broker_files(target: Target, sec: Secrets, broker_unit: str, log: Log | None = None, queued: bool = False) -> list[str]:
    """Give the broker this cookie and user password through its files; what changed.

    Before the broker's first start of a boot (the ``coa-openstack-broker`` job) the files are
    only written. A broker that is running (or starting: it has read the old cookie) is
    stopped around the change, since its CLI needs the old cookie to stop it, and imports the
    definitions when it starts again; ``queued``: its start is queued, not waited for (a unit
    ordered before the broker would wait for itself).
    """
    stale = [f for f in broker_files(sec, broker_unit) if not target.holds(f.path, f.content, f.mode, f.owner, f.group)]
    if not stale:
        return []
    state = target.run(["systemctl", "is-active", broker_unit], check=False).stdout.strip()
    running = state in ("active", "activating", "reloading")
    if running:
        if log:
            log(f"stopping {broker_unit} to give it new files: " + ", ".join(posixpath.basename(f.path) for f in stale))
        target.run(bounded(["systemctl", "stop", broker_unit], 120))
    for f in stale:
        target.put(f.path, f.content, f.mode, f.owner, f.group)
    if running and queued:
        target.run(["systemctl", "--no-block", "start", broker_unit])
    elif running:
        target.run(bounded(["systemctl", "start", broker_unit], 300))
        wait_rabbit(target)
    names = {ERLANG_COOKIE: "Erlang cookie", RABBIT_DEFINITIONS: f"password of {RABBIT_USER} (definitions)", RABBIT_CONF: RABBIT_CONF}
    return [names[f.path] for f in stale]


def infra_files(settings: Settings, prof: OpenStackProfile) -> list[FileSpec]:
    """The MariaDB and RabbitMQ drop-ins (no secrets, no addresses)."""
    return [
        FileSpec("/etc/mysql/mariadb.conf.d/99-ceph-openstack-ami.cnf", render_mariadb_cnf(settings), 0o644, "root", "root", (prof.database_unit,)),
        FileSpec("/etc/rabbitmq/rabbitmq-env.conf", render_rabbitmq_env(), 0o644, "root", "root", (prof.broker_unit,)),
    ]


def rotate(target: Target, settings: Settings, new: Secrets, broker_unit: str, log: Log) -> list[str]:
    """A new instance's part here: database passwords; the broker's files (written before its start
    by ``coa-openstack-broker``: unchanged at boot, the broker is restarted when run by hand); what changed."""
    done: list[str] = []
    wait_mysql(target)
    done += ensure_database(target, settings, new)
    done += ensure_broker_files(target, new, broker_unit, log)
    return done


def start_infrastructure(target: Target, settings: Settings, prof: OpenStackProfile) -> tuple[bool, str]:
    """MariaDB and RabbitMQ enabled and running."""
    did = ensure_running(target, [prof.database_unit, prof.broker_unit])
    wait_mysql(target)
    wait_rabbit(target)
    return outcome(did, f"{prof.database_unit} and {prof.broker_unit} running")


def database_step(target: Target, settings: Settings) -> tuple[bool, str]:
    """Databases and users with this host's passwords."""
    did = ensure_database(target, settings, require_secrets(target, settings))
    return outcome(did, "databases keystone, glance, cinder and their users current")


def broker_step(target: Target, settings: Settings, prof: OpenStackProfile) -> tuple[bool, str]:
    """The broker's cookie and definitions (this host's password, loaded at every start); the user current, no guest."""
    sec = require_secrets(target, settings)
    did = ensure_broker_files(target, sec, prof.broker_unit)
    wait_rabbit(target)
    did += ensure_rabbit(target, sec)
    return outcome(did, f"RabbitMQ user {RABBIT_USER} current (and in {RABBIT_DEFINITIONS}), no other user")
