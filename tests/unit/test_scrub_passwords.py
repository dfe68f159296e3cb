"""The scrub empties the build's OpenStack passwords; the audit then finds none."""

from __future__ import annotations

import pytest

from provision.image.scrub import blank_service_passwords

CASES = [
    ("password = hunter2\n", "password = \n"),
    ("  admin_password=x y\n", "  admin_password=\n"),
    ("memcache_secret_key = k\n", "memcache_secret_key = \n"),
    ("connection = mysql+pymysql://glance:p4ss@localhost/glance\n", "connection = mysql+pymysql://glance:@localhost/glance\n"),
    ("transport_url = rabbit://openstack:abc@127.0.0.1:5672/\n", "transport_url = rabbit://openstack:@127.0.0.1:5672/\n"),
    ("# password = in a comment stays\n", "# password = in a comment stays\n"),
    ("auth_url = http://10.0.0.1:5000/v3\n", "auth_url = http://10.0.0.1:5000/v3\n"),
    ("password =\n", "password =\n"),
    ("SECRET_KEY = 'dj4ng0'\n", "SECRET_KEY = ''\n"),
    ("WEBROOT = '/'\n", "WEBROOT = '/'\n"),
]


@pytest.mark.parametrize("text,want", CASES)
def test_blank_service_passwords(text: str, want: str) -> None:
    assert blank_service_passwords(text) == want
    assert blank_service_passwords(want) == want  # idempotent


def test_audit_finds_no_password_after_blanking(tmp_path) -> None:
    from provision.image.audit import audit
    from provision.target.local import LocalTarget

    conf = tmp_path / "etc/glance/glance-api.conf"
    conf.parent.mkdir(parents=True)
    text = "[database]\nconnection = mysql+pymysql://glance:p4ss@localhost/glance\n[keystone_authtoken]\npassword = hunter2\n"
    conf.write_text(text)
    conf.chmod(0o640)
    assert {f.kind for f in audit(LocalTarget(), root=str(tmp_path)).findings} == {"openstack-password"}
    conf.write_text(blank_service_passwords(text))
    assert audit(LocalTarget(), root=str(tmp_path)).findings == []


def test_audit_finds_the_dashboard_key_until_blanked(tmp_path) -> None:
    from provision.image.audit import audit
    from provision.target.local import LocalTarget

    py = tmp_path / "etc/openstack-dashboard/local_settings.d/_90_ceph_openstack_ami.py"
    py.parent.mkdir(parents=True)
    text = "WEBROOT = '/'\nSECRET_KEY = 'dj4ng0k3y'\n"
    py.write_text(text)
    py.chmod(0o640)
    assert {(f.kind, f.detail) for f in audit(LocalTarget(), root=str(tmp_path)).findings} == {("openstack-password", "Django SECRET_KEY with a value")}
    py.write_text(blank_service_passwords(text))
    assert audit(LocalTarget(), root=str(tmp_path)).findings == []
