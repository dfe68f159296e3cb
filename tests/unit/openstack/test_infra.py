"""MariaDB and RabbitMQ: drop-ins, SQL quoting, the database and broker plans as tables."""

from __future__ import annotations

import json
from typing import Any

import pytest

from provision.exceptions import ConfigError
from provision.openstack.infra import (
    ERLANG_COOKIE,
    RABBIT_CONF,
    RABBIT_DEFINITIONS,
    DbObserved,
    broker_files,
    mysql_native_hash,
    parse_database_observation,
    plan_database,
    plan_rabbit,
    rabbit_password_hash,
    rabbit_password_matches,
    render_mariadb_cnf,
    render_rabbit_definitions,
    render_rabbitmq_env,
    sql_ident,
    sql_string,
)
from provision.openstack.ini import parse_ini

from .samples import SEC, S


def test_mariadb_and_rabbitmq_listen_on_loopback() -> None:
    cnf = parse_ini(render_mariadb_cnf(S))["mysqld"]
    assert cnf["bind-address"] == "127.0.0.1" and cnf["innodb_buffer_pool_size"] == "64M"
    env = render_rabbitmq_env()
    assert "NODENAME=rabbit@localhost" in env and "NODE_IP_ADDRESS=127.0.0.1" in env


@pytest.mark.parametrize(("value", "literal"), [("abc", "'abc'"), ("a'b", "'a\\'b'"), ("a\\b", "'a\\\\b'")])
def test_sql_string(value: str, literal: str) -> None:
    assert sql_string(value) == literal


@pytest.mark.parametrize("bad", ["", "a-b", "a`b", "x; DROP"])
def test_sql_ident_refuses(bad: str) -> None:
    with pytest.raises(ConfigError):
        sql_ident(bad)


def test_mysql_native_hash_known_value() -> None:
    # SELECT PASSWORD('password') on MariaDB
    assert mysql_native_hash("password") == "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"


ALL_DBS = ("keystone", "glance", "cinder", "placement", "nova_api", "nova", "nova_cell0", "neutron")


ALL_GRANTS = (("keystone", "keystone"), ("glance", "glance"), ("cinder", "cinder"), ("placement", "placement"),
              ("nova_api", "nova"), ("nova", "nova"), ("nova_cell0", "nova"), ("neutron", "neutron"))


def _observed(users: dict[str, str], dbs: tuple[str, ...] = ALL_DBS, grants: tuple[tuple[str, str], ...] = ALL_GRANTS) -> DbObserved:
    lines = [f"db\t{d}\t" for d in (*dbs, "mysql")]
    lines += [f"user\t{u}\t{h}" for u, h in users.items()]
    # MariaDB escapes the underscore of a granted database name in mysql.db.
    lines += [f"grant\t{d.replace('_', chr(92) + '_')}\t{u}" for d, u in grants]
    return parse_database_observation("\n".join(lines) + "\n")


CURRENT = {"keystone": mysql_native_hash("KsDb"), "glance": mysql_native_hash("GlDb"), "cinder": mysql_native_hash("CiDb"),
           "placement": mysql_native_hash("PlDb"), "nova": mysql_native_hash("NvDb"), "neutron": mysql_native_hash("NeDb"), "root": "invalid"}


@pytest.mark.parametrize(
    ("observed", "what"),
    [
        (_observed({}, dbs=(), grants=()), [
            "database keystone", "user keystone", "grant on keystone to keystone",
            "database glance", "user glance", "grant on glance to glance",
            "database cinder", "user cinder", "grant on cinder to cinder",
            "database placement", "user placement", "grant on placement to placement",
            # Nova's three databases share one user: made once, granted three times.
            "database nova_api", "user nova", "grant on nova_api to nova",
            "database nova", "grant on nova to nova",
            "database nova_cell0", "grant on nova_cell0 to nova",
            "database neutron", "user neutron", "grant on neutron to neutron",
        ]),
        (_observed(CURRENT), []),
        (_observed({**CURRENT, "glance": mysql_native_hash("old")}), ["password of glance"]),
        (_observed({**CURRENT, "nova": mysql_native_hash("old")}), ["password of nova"]),
        (_observed(CURRENT, grants=ALL_GRANTS[:2] + ALL_GRANTS[3:]), ["grant on cinder to cinder"]),
        (_observed(CURRENT, grants=ALL_GRANTS[:6] + ALL_GRANTS[7:]), ["grant on nova_cell0 to nova"]),
    ],
)
def test_plan_database(observed: DbObserved, what: list[str]) -> None:
    sql, done = plan_database(observed, SEC)
    assert done == what
    assert len(sql) == len(what)
    assert not any(p in " ".join(done) for p in ("KsDb", "GlDb", "CiDb", "NvDb", "PlDb", "NeDb"))  # the log never names a secret


def test_plan_database_alter_carries_the_new_password_in_sql_only() -> None:
    sql, _ = plan_database(_observed({**CURRENT, "cinder": "*00"}), SEC)
    assert sql == ["ALTER USER 'cinder'@'localhost' IDENTIFIED BY 'CiDb';"]


# Exported by rabbitmqctl 3.10.8 after `add_user testu` with password "secretpw" on stdin.
RABBIT_VECTOR = ("A+F8VCHIJXOw5k7e2MKoRSs4ziutEKFj9WzkbpT1EliVusdl", "secretpw")


def test_rabbit_hash_matches_rabbitmq() -> None:
    stored, pw = RABBIT_VECTOR
    assert rabbit_password_matches(stored, pw)
    assert not rabbit_password_matches(stored, "other")
    assert not rabbit_password_matches("garbage!", pw)
    assert rabbit_password_matches(rabbit_password_hash("x", b"salt"), "x")


def test_rabbit_definitions_give_user_openstack_this_password_and_render_the_same_twice() -> None:
    text = render_rabbit_definitions("RbPw")
    assert text == render_rabbit_definitions("RbPw") != render_rabbit_definitions("other")
    defs = json.loads(text)
    assert plan_rabbit(defs, "RbPw") == []  # the plan that rabbitmqctl's export is read with finds it current
    assert plan_rabbit(defs, "old") == ["password"]
    assert "RbPw" not in text and [v["name"] for v in defs["vhosts"]] == ["/"]


def test_the_broker_reads_its_files_before_it_starts_and_only_root_and_rabbitmq_read_the_secret_ones() -> None:
    files = {f.path: f for f in broker_files(SEC, "rabbitmq-server.service")}
    assert files[ERLANG_COOKIE].content == SEC.erlang_cookie and files[ERLANG_COOKIE].mode == 0o400
    assert (files[RABBIT_DEFINITIONS].mode, files[RABBIT_DEFINITIONS].owner, files[RABBIT_DEFINITIONS].group) == (0o640, "root", "rabbitmq")
    assert f"load_definitions = {RABBIT_DEFINITIONS}" in files[RABBIT_CONF].content
    assert all(f.units == ("rabbitmq-server.service",) for f in files.values())


def _defs(users: list[tuple[str, str]], perms: bool = True) -> dict[str, Any]:
    return {
        "users": [{"name": n, "password_hash": h} for n, h in users],
        "permissions": [{"user": "openstack", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}] if perms else [],
    }


@pytest.mark.parametrize(
    ("defs", "actions"),
    [
        (_defs([("guest", "x")], perms=False), ["add", "permissions", "delete:guest"]),
        (_defs([("openstack", rabbit_password_hash("RbPw", b"abcd"))]), []),
        (_defs([("openstack", rabbit_password_hash("old", b"abcd"))]), ["password"]),
        (_defs([("openstack", rabbit_password_hash("RbPw", b"abcd"))], perms=False), ["permissions"]),
    ],
)
def test_plan_rabbit(defs: dict[str, Any], actions: list[str]) -> None:
    assert plan_rabbit(defs, "RbPw") == actions
