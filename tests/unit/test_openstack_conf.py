"""OpenStack configuration: pure renderers and planners (offline, no Docker)."""

from __future__ import annotations

import dataclasses
import json
import string
from types import SimpleNamespace
from typing import Any

import pytest

from provision.exceptions import ConfigError
from provision.openstack_conf import (
    DbObserved,
    Addresses,
    CatalogAction,
    Secrets,
    console_line,
    desired_endpoints,
    keyring_key,
    mysql_native_hash,
    new_fernet_key,
    new_password,
    parse_database_observation,
    parse_ini,
    parse_openrc,
    parse_virsh_secret_list,
    pick_image,
    plan_boot_volume,
    plan_catalog,
    plan_database,
    plan_rabbit,
    rabbit_password_hash,
    rabbit_password_matches,
    render_cinder_conf,
    render_default_file,
    render_glance_api_conf,
    render_ini,
    render_keystone_conf,
    render_libvirt_secret_xml,
    render_mariadb_cnf,
    render_openrc,
    render_rabbitmq_env,
    render_uwsgi_ini,
    sql_ident,
    sql_string,
    uwsgi_apps,
    uwsgi_ini_path,
)
from provision.settings import Settings, apply_overrides

S = Settings()
ADDRS = Addresses("10.77.0.5", "ec2-203-0-113-7.compute-1.amazonaws.com")
SEC = Secrets(
    admin_password="Adm1nPassw0rd",
    keystone_db="KsDb",
    glance_db="GlDb",
    cinder_db="CiDb",
    glance_service="GlSvc",
    cinder_service="CiSvc",
    rabbit="RbPw",
    erlang_cookie="COOKIE",
    libvirt_secret_uuid="5f0c4f8e-8a47-4c55-9d3e-6f2b8d6f1a01",
    nova_db="NvDb",
    placement_db="PlDb",
    neutron_db="NeDb",
    nova_service="NvSvc",
    placement_service="PlSvc",
    neutron_service="NeSvc",
    dashboard_key="DjangoKey",
)


# --- secrets ----------------------------------------------------------------------------
def test_generated_secrets_are_new_alphanumeric_and_hidden_from_repr() -> None:
    a, b = Secrets.generate(), Secrets.generate()
    values = [v for k, v in dataclasses.asdict(a).items() if k != "libvirt_secret_uuid"]
    assert all(len(v) >= 32 and set(v) <= set(string.ascii_letters + string.digits) for v in values)
    assert len(set(values)) == len(values)  # no two secrets alike
    assert a.differing(b) == [f.name for f in dataclasses.fields(Secrets)]  # every value renewed
    assert not any(v in repr(a) for v in values)


def test_secrets_roundtrip_and_missing_field() -> None:
    assert Secrets.from_json(SEC.to_json()) == SEC
    data = json.loads(SEC.to_json())
    del data["rabbit"]
    with pytest.raises(ConfigError, match="rabbit"):
        Secrets.from_json(json.dumps(data))
    with pytest.raises(ConfigError):
        Secrets.from_json("not json")


def test_password_and_fernet_key_shapes() -> None:
    assert len(new_password(20)) == 20
    key = new_fernet_key()
    import base64

    assert len(base64.urlsafe_b64decode(key)) == 32


# --- addresses and the catalog -----------------------------------------------------------
@pytest.mark.parametrize(
    ("public", "expected"),
    [("ec2-1-2-3-4.compute-1.amazonaws.com", "ec2-1-2-3-4.compute-1.amazonaws.com"), (None, "10.0.0.9"), ("", "10.0.0.9")],
)
def test_addresses_from_metadata(public: str | None, expected: str) -> None:
    info = SimpleNamespace(local_ipv4="10.0.0.9", public_hostname=public)
    assert Addresses.from_info(info) == Addresses("10.0.0.9", expected)


@pytest.mark.parametrize(
    ("service", "interface", "url"),
    [
        ("identity", "public", "http://ec2-203-0-113-7.compute-1.amazonaws.com:5000/v3"),
        ("identity", "internal", "http://10.77.0.5:5000/v3"),
        ("identity", "admin", "http://10.77.0.5:5000/v3"),
        ("image", "public", "http://ec2-203-0-113-7.compute-1.amazonaws.com:9292"),
        ("image", "internal", "http://10.77.0.5:9292"),
        ("volumev3", "public", "http://ec2-203-0-113-7.compute-1.amazonaws.com:8776/v3/%(project_id)s"),
        ("volumev3", "admin", "http://10.77.0.5:8776/v3/%(project_id)s"),
        ("compute", "public", "http://ec2-203-0-113-7.compute-1.amazonaws.com:8774/v2.1"),
        ("compute", "internal", "http://10.77.0.5:8774/v2.1"),
        ("placement", "internal", "http://10.77.0.5:8778"),
        ("network", "public", "http://ec2-203-0-113-7.compute-1.amazonaws.com:9696"),
    ],
)
def test_desired_endpoints(service: str, interface: str, url: str) -> None:
    desired = desired_endpoints(S, ADDRS)
    assert len(desired) == 18  # six services, three interfaces each
    assert desired[(service, interface)] == url


def _catalog(urls: dict[tuple[str, str], str], region: str = "RegionOne") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    services = [{"id": f"s-{t}", "type": t} for t in sorted({t for t, _ in urls})]
    endpoints = [{"id": f"e-{t}-{i}", "service_id": f"s-{t}", "interface": i, "url": u, "region_id": region} for (t, i), u in urls.items()]
    return services, endpoints


def test_plan_catalog_empty_creates_services_then_endpoints() -> None:
    plan = plan_catalog(desired_endpoints(S, ADDRS), [], [], "RegionOne")
    assert [a.kind for a in plan] == ["service"] * 6 + ["create"] * 18
    assert {a.service_type for a in plan if a.kind == "service"} == {"identity", "image", "volumev3", "compute", "placement", "network"}


def test_plan_catalog_current_is_empty() -> None:
    desired = desired_endpoints(S, ADDRS)
    assert plan_catalog(desired, *_catalog(desired), "RegionOne") == []


def test_plan_catalog_follows_a_new_address_and_name() -> None:
    old = desired_endpoints(S, Addresses("10.77.0.4", "ec2-old.compute-1.amazonaws.com"))
    new = desired_endpoints(S, ADDRS)
    plan = plan_catalog(new, *_catalog(old), "RegionOne")
    assert len(plan) == 18 and all(a.kind == "update" for a in plan)
    assert CatalogAction("update", "identity", "public", new[("identity", "public")], "e-identity-public") in plan


def test_plan_catalog_fixes_region_and_removes_duplicates() -> None:
    desired = desired_endpoints(S, ADDRS)
    services, endpoints = _catalog(desired, region="elsewhere")
    endpoints.append({"id": "dup", "service_id": "s-image", "interface": "public", "url": "http://stale:9292", "region_id": "RegionOne"})
    plan = plan_catalog(desired, services, endpoints, "RegionOne")
    assert sum(a.kind == "update" for a in plan) == 18
    assert [a.endpoint_id for a in plan if a.kind == "delete"] == ["dup"]


# --- rendered files ------------------------------------------------------------------------
def test_glance_conf_stores_images_in_rbd() -> None:
    conf = parse_ini(render_glance_api_conf(S, SEC, ADDRS))
    assert conf["DEFAULT"]["show_image_direct_url"] == "true"
    assert conf["DEFAULT"]["enabled_backends"] == "rbd:rbd"
    assert conf["DEFAULT"]["workers"] == str(S.openstack.glance_workers)
    assert conf["glance_store"]["default_backend"] == "rbd"
    assert conf["rbd"]["rbd_store_pool"] == "images" and conf["rbd"]["rbd_store_user"] == "images"
    assert conf["rbd"]["rbd_store_ceph_conf"] == "/etc/ceph/ceph.conf"
    assert conf["database"]["connection"].startswith("mysql+pymysql://glance:GlDb@localhost/glance?unix_socket=")
    auth = conf["keystone_authtoken"]
    assert auth["password"] == "GlSvc" and auth["username"] == "glance"
    assert auth["www_authenticate_uri"] == "http://ec2-203-0-113-7.compute-1.amazonaws.com:5000"
    assert auth["auth_url"] == "http://10.77.0.5:5000"


def test_cinder_conf_has_one_rbd_backend() -> None:
    conf = parse_ini(render_cinder_conf(S, SEC, ADDRS))
    d = conf["DEFAULT"]
    assert d["enabled_backends"] == "ceph" and d["host"] == "cephdemo" and d["my_ip"] == "10.77.0.5"
    assert d["periodic_fuzzy_delay"] == "0"
    assert d["transport_url"] == "rabbit://openstack:RbPw@127.0.0.1:5672/"
    assert d["glance_api_servers"] == "http://10.77.0.5:9292"
    b = conf["ceph"]
    assert b["volume_driver"] == "cinder.volume.drivers.rbd.RBDDriver"
    assert (b["rbd_pool"], b["rbd_user"], b["volume_backend_name"]) == ("volumes", "volumes", "ceph")
    assert b["rbd_secret_uuid"] == SEC.libvirt_secret_uuid
    assert b["rbd_flatten_volume_from_snapshot"] == "false"


def test_keystone_conf_uses_fernet_and_mariadb() -> None:
    conf = parse_ini(render_keystone_conf(S, SEC))
    assert conf["token"]["provider"] == "fernet"
    assert conf["fernet_tokens"]["key_repository"] == "/etc/keystone/fernet-keys/"
    assert conf["credential"]["key_repository"] == "/etc/keystone/credential-keys/"
    assert "KsDb" in conf["database"]["connection"]


def test_openrc_roundtrips_and_quotes() -> None:
    env = parse_openrc(render_openrc(S, SEC, ADDRS))
    assert env["OS_PASSWORD"] == "Adm1nPassw0rd"
    assert env["OS_AUTH_URL"] == "http://ec2-203-0-113-7.compute-1.amazonaws.com:5000/v3"
    assert (env["OS_USERNAME"], env["OS_PROJECT_NAME"], env["OS_REGION_NAME"]) == ("admin", "admin", "RegionOne")
    odd = dataclasses.replace(SEC, admin_password="a b'c")
    assert parse_openrc(render_openrc(S, odd, ADDRS))["OS_PASSWORD"] == "a b'c"


def test_configs_change_only_with_their_inputs() -> None:
    assert render_cinder_conf(S, SEC, ADDRS) == render_cinder_conf(S, SEC, Addresses(ADDRS.private_ip, ADDRS.public_host))
    moved = Addresses("10.77.0.9", ADDRS.public_host)
    assert render_cinder_conf(S, SEC, moved) != render_cinder_conf(S, SEC, ADDRS)
    assert render_keystone_conf(S, SEC) == render_keystone_conf(S, SEC)


def test_ini_refuses_multiline_values() -> None:
    with pytest.raises(ConfigError):
        render_ini("# x", [("DEFAULT", [("key", "a\nb")])])


@pytest.mark.parametrize("package", ["keystone", "cinder-api"])
def test_uwsgi_ini_is_small_and_has_no_apparmor(package: str) -> None:
    s = apply_overrides(S, {"openstack": {"keystone_processes": 2, "cinder_api_threads": 3}})
    app = uwsgi_apps(s)[package]
    ini = parse_ini(render_uwsgi_ini(app))["uwsgi"]
    assert ini["plugins"] == "python3"
    assert "apparmor" not in render_uwsgi_ini(app)
    assert ini["http-socket"] == f"0.0.0.0:{app.port}"
    assert ini["add-header"] == "Connection: close"
    assert (ini["processes"], ini["threads"]) == (str(app.processes), str(app.threads))
    assert f"--ini {uwsgi_ini_path(package)}" in render_default_file(package)


def test_uwsgi_counts_come_from_settings() -> None:
    s = apply_overrides(S, {"openstack": {"keystone_processes": 2, "cinder_api_threads": 3}})
    assert uwsgi_apps(s)["keystone"].processes == 2
    assert uwsgi_apps(s)["cinder-api"].threads == 3


def test_mariadb_and_rabbitmq_listen_on_loopback() -> None:
    cnf = parse_ini(render_mariadb_cnf(S))["mysqld"]
    assert cnf["bind-address"] == "127.0.0.1" and cnf["innodb_buffer_pool_size"] == "64M"
    env = render_rabbitmq_env()
    assert "NODENAME=rabbit@localhost" in env and "NODE_IP_ADDRESS=127.0.0.1" in env


def test_libvirt_secret_xml() -> None:
    xml = render_libvirt_secret_xml(SEC.libvirt_secret_uuid, "volumes")
    assert f"<uuid>{SEC.libvirt_secret_uuid}</uuid>" in xml
    assert "<usage type='ceph'>" in xml and "<name>client.volumes secret</name>" in xml
    with pytest.raises(ValueError):
        render_libvirt_secret_xml("not-a-uuid", "volumes")


def test_parse_virsh_secret_list_and_keyring() -> None:
    out = (
        " UUID                                   Usage\n"
        "--------------------------------------------------------------------\n"
        " 5f0c4f8e-8a47-4c55-9d3e-6f2b8d6f1a01   ceph client.volumes secret\n"
    )
    assert parse_virsh_secret_list(out) == [("5f0c4f8e-8a47-4c55-9d3e-6f2b8d6f1a01", "ceph client.volumes secret")]
    assert keyring_key("[client.volumes]\n\tkey = AQBxyz==\n\tcaps mon = \"profile rbd\"\n") == "AQBxyz=="


def test_console_line_is_the_documented_one() -> None:
    assert console_line(ADDRS, "pw") == "ceph-openstack-ami: admin password for http://ec2-203-0-113-7.compute-1.amazonaws.com/: pw"


# --- MariaDB --------------------------------------------------------------------------------
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


# --- RabbitMQ --------------------------------------------------------------------------------
# Exported by rabbitmqctl 3.10.8 after `add_user testu` with password "secretpw" on stdin.
RABBIT_VECTOR = ("A+F8VCHIJXOw5k7e2MKoRSs4ziutEKFj9WzkbpT1EliVusdl", "secretpw")


def test_rabbit_hash_matches_rabbitmq() -> None:
    stored, pw = RABBIT_VECTOR
    assert rabbit_password_matches(stored, pw)
    assert not rabbit_password_matches(stored, "other")
    assert not rabbit_password_matches("garbage!", pw)
    assert rabbit_password_matches(rabbit_password_hash("x", b"salt"), "x")


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


# --- the bootable volume ------------------------------------------------------------------------
def vol(vid: str, status: str, created: str = "2026-01-01T00:00:00", name: str = "cephdemo-boot", attached: bool = False) -> dict[str, Any]:
    return {"id": vid, "name": name, "status": status, "created_at": created, "attachments": [{"server_id": "s"}] if attached else []}


@pytest.mark.parametrize(
    ("volumes", "keep", "delete", "wait", "create"),
    [
        ([], None, (), (), True),
        ([vol("x", "available", name="other")], None, (), (), True),
        ([vol("a", "available")], "a", (), (), False),
        ([vol("a", "in-use", attached=True)], "a", (), (), False),
        ([vol("a", "error")], None, ("a",), (), False),
        ([vol("a", "creating")], None, (), ("a",), False),
        ([vol("a", "downloading"), vol("b", "error")], None, ("b",), ("a",), False),
        ([vol("a", "available", "2026-01-01"), vol("b", "error", "2026-01-02")], "a", ("b",), (), False),
        ([vol("b", "available", "2026-01-02"), vol("a", "available", "2026-01-01")], "a", ("b",), (), False),
        ([vol("a", "available", "2026-01-01"), vol("b", "in-use", "2026-01-02", attached=True)], "a", (), (), False),
        ([vol("a", "available"), vol("b", "creating", "2026-01-02")], "a", (), ("b",), False),
        ([vol("a", "error_deleting")], None, (), (), True),
    ],
)
def test_plan_boot_volume(volumes: list[dict[str, Any]], keep: str | None, delete: tuple[str, ...], wait: tuple[str, ...], create: bool) -> None:
    plan = plan_boot_volume(volumes, "cephdemo-boot")
    assert (plan.keep, plan.delete, plan.wait, plan.create) == (keep, delete, wait, create)
    assert not (plan.create and (plan.keep or plan.wait or plan.delete))  # never a second one while one exists


@pytest.mark.parametrize(
    ("images", "keep", "drop"),
    [
        ([], None, []),
        ([{"id": "i1", "name": "g", "status": "active", "created_at": "1"}], "i1", []),
        ([{"id": "i1", "name": "g", "status": "queued", "created_at": "1"}], None, ["i1"]),
        ([{"id": "i2", "name": "g", "status": "active", "created_at": "2"}, {"id": "i1", "name": "g", "status": "active", "created_at": "1"}], "i1", ["i2"]),
        ([{"id": "i1", "name": "other", "status": "active", "created_at": "1"}], None, []),
    ],
)
def test_pick_image(images: list[dict[str, Any]], keep: str | None, drop: list[str]) -> None:
    assert pick_image(images, "g") == (keep, drop)


# --- compute, network, dashboard (issue 6) --------------------------------------------------------
from provision.openstack_conf import (  # noqa: E402
    INSTANCE_KEY,
    plan_demo_server,
    render_dashboard_overrides,
    render_dhcp_agent_ini,
    render_guest_net_unit,
    render_linuxbridge_agent_ini,
    render_neutron_conf,
    render_nova_compute_conf,
    render_nova_conf,
    virt_type,
)


@pytest.mark.parametrize(("setting", "kvm", "want"), [("auto", False, "qemu"), ("auto", True, "kvm"), ("qemu", True, "qemu"), ("kvm", False, "kvm")])
def test_virt_type_follows_the_kvm_device(setting: str, kvm: bool, want: str) -> None:
    assert virt_type(setting, kvm) == want
    s = apply_overrides(S, {"openstack": {"virt_type": setting}})
    assert parse_ini(render_nova_conf(s, SEC, ADDRS, kvm))["libvirt"]["virt_type"] == want
    assert parse_ini(render_nova_compute_conf(s, kvm))["libvirt"]["virt_type"] == want  # read after nova.conf


def test_virt_type_rejects_unknown_values() -> None:
    with pytest.raises(ConfigError):
        virt_type("xen", False)


def test_nova_conf_wires_rbd_volumes_novnc_and_services() -> None:
    conf = parse_ini(render_nova_conf(S, SEC, ADDRS))
    assert conf["libvirt"]["rbd_user"] == "volumes" and conf["libvirt"]["rbd_secret_uuid"] == SEC.libvirt_secret_uuid
    assert conf["vnc"]["novncproxy_base_url"] == f"http://{ADDRS.public_host}:6080/vnc_auto.html"
    assert conf["vnc"]["server_proxyclient_address"] == ADDRS.private_ip
    assert conf["DEFAULT"]["host"] == "cephdemo" and conf["DEFAULT"]["resume_guests_state_on_host_boot"] == "true"
    assert conf["service_user"]["send_service_user_token"] == "true" and conf["service_user"]["password"] == "NvSvc"
    assert conf["placement"]["password"] == "PlSvc" and conf["neutron"]["password"] == "NeSvc"
    assert "NvDb@localhost/nova_api?" in conf["api_database"]["connection"]
    assert "NvDb@localhost/nova?" in conf["database"]["connection"]


def test_neutron_is_flat_linuxbridge_on_the_guest_link() -> None:
    conf = parse_ini(render_neutron_conf(S, SEC, ADDRS))
    assert conf["DEFAULT"]["core_plugin"] == "ml2" and conf["DEFAULT"]["service_plugins"] == ""
    assert conf["experimental"]["linuxbridge"] == "true"
    assert conf["nova"]["password"] == "NvSvc" and "NeDb@localhost/neutron?" in conf["database"]["connection"]
    agent = parse_ini(render_linuxbridge_agent_ini(S))
    assert agent["linux_bridge"]["physical_interface_mappings"] == "provider:coa-phys"
    assert agent["vxlan"]["enable_vxlan"] == "false"
    assert parse_ini(render_dhcp_agent_ini(S))["DEFAULT"]["interface_driver"] == "linuxbridge"
    unit = render_guest_net_unit(S)
    assert "ip link add coa-gw type veth peer name coa-phys" in unit and "10.99.0.1/24 dev coa-gw" in unit


def test_service_tokens_need_the_service_role() -> None:
    for text in (render_cinder_conf(S, SEC, ADDRS), render_nova_conf(S, SEC, ADDRS), render_neutron_conf(S, SEC, ADDRS)):
        auth = parse_ini(text)["keystone_authtoken"]
        assert auth["service_token_roles"] == "service" and auth["service_token_roles_required"] == "true"


def test_dashboard_overrides_are_per_instance() -> None:
    text = render_dashboard_overrides(S, SEC, ADDRS)
    ns: dict[str, Any] = {}
    exec(compile(text, "overrides", "exec"), ns)  # it is Python: it must at least run
    assert ns["WEBROOT"] == "/" and ns["SECRET_KEY"] == "DjangoKey"
    assert {ADDRS.public_host, ADDRS.private_ip} <= set(ns["ALLOWED_HOSTS"]) and "*" not in ns["ALLOWED_HOSTS"]
    assert ns["OPENSTACK_KEYSTONE_URL"] == "http://127.0.0.1:5000/v3"


def test_secrets_from_an_older_version_are_completed_not_replaced() -> None:
    old = json.loads(SEC.to_json())
    for name in ("nova_db", "dashboard_key"):
        del old[name]
    with pytest.raises(ConfigError, match="nova_db"):
        Secrets.from_json(json.dumps(old))
    done = Secrets.from_json(json.dumps(old), complete=True)
    assert set(done.differing(SEC)) == {"nova_db", "dashboard_key"}
    assert done.nova_db and done.dashboard_key


def _server(sid: str, status: str, instance: str | None = "i-new", created: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    meta = {INSTANCE_KEY: instance} if instance else {}
    return {"id": sid, "name": "cephdemo-server", "status": status, "created": created, "metadata": meta}


@pytest.mark.parametrize(
    ("servers", "keep", "delete", "start", "wait", "create"),
    [
        ([], None, (), False, False, True),
        ([_server("a", "ACTIVE")], "a", (), False, False, False),
        ([_server("a", "BUILD")], "a", (), False, True, False),
        ([_server("a", "SHUTOFF")], "a", (), True, False, False),
        ([_server("a", "ERROR")], None, ("a",), False, False, False),
        # The previous instance's (or the builder's) server: its volume connection is stale.
        ([_server("old", "ACTIVE", "i-old")], None, ("old",), False, False, False),
        ([_server("old", "ERROR", None)], None, ("old",), False, False, False),
        ([_server("old", "ACTIVE", "i-old"), _server("a", "BUILD")], "a", ("old",), False, True, False),
        # Never two: the later one goes.
        ([_server("b", "ACTIVE", created="2026-01-02T00:00:00Z"), _server("a", "ACTIVE")], "a", ("b",), False, False, False),
        ([{**_server("x", "ACTIVE"), "name": "other"}], None, (), False, False, True),
        ([_server("gone", "DELETED")], None, (), False, False, True),
    ],
)
def test_plan_demo_server(servers: list[dict[str, Any]], keep: str | None, delete: tuple[str, ...], start: bool, wait: bool, create: bool) -> None:
    plan = plan_demo_server(servers, "cephdemo-server", "i-new")
    assert (plan.keep, plan.delete, plan.start, plan.wait, plan.create) == (keep, delete, start, wait, create)


def test_only_the_uwsgi_apps_that_use_rpc_send_heartbeats_from_a_native_thread() -> None:
    from provision.openstack_conf import RPC_HEARTBEAT_ENV

    apps = uwsgi_apps(S)
    with_env = {p for p, app in apps.items() if parse_ini(render_uwsgi_ini(app))["uwsgi"].get("env") == RPC_HEARTBEAT_ENV}
    assert with_env == {"nova-api", "neutron-api", "cinder-api"}
