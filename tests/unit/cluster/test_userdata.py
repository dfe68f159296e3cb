"""The join section of user data: plain, gzip and MIME multipart; absent, valid and wrong."""

from __future__ import annotations

import gzip
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest

from provision.cluster import token as tk
from provision.cluster.userdata import parse_join, render_join_user_data
from provision.exceptions import JoinError

TOKEN, _ = tk.issue(controller="10.0.0.5", port=13443, fingerprint="cd" * 32, now=1_800_000_000, ttl_s=60,
                    random_id=b"\x05" * 8, random_secret=b"\x06" * 32)
LINE = tk.encode(TOKEN)


def test_rendered_user_data_is_cloud_config_that_parses_back() -> None:
    text = render_join_user_data(LINE)
    assert text.startswith("#cloud-config\n")
    join = parse_join(text)
    assert join is not None and join.token == TOKEN


@pytest.mark.parametrize("raw", [None, "", "#!/bin/sh\necho hi\n", "#cloud-config\npackages: [htop]\n"])
def test_user_data_without_a_join_section_bootstraps_alone(raw: str | None) -> None:
    assert parse_join(raw) is None


def test_gzip_compressed_user_data_is_read() -> None:
    join = parse_join(gzip.compress(render_join_user_data(LINE).encode()))
    assert join is not None and join.token == TOKEN


def test_a_mime_multipart_archive_is_read_part_by_part() -> None:
    msg = MIMEMultipart()
    msg.attach(MIMEText("#!/bin/sh\necho first\n", "x-shellscript"))
    msg.attach(MIMEText("#cloud-config\npackages: [htop]\n", "cloud-config"))
    msg.attach(MIMEText(render_join_user_data(LINE), "cloud-config"))
    join = parse_join(msg.as_string())
    assert join is not None and join.token == TOKEN


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("#cloud-config\nceph_openstack_ami: yes\n", "must be a mapping"),
        ("#cloud-config\nceph_openstack_ami:\n  joins: {}\n", "unknown keys: joins"),
        ("#cloud-config\nceph_openstack_ami:\n  join: {}\n", "needs a `token:` line"),
        ("#cloud-config\nceph_openstack_ami:\n  join: {token: nope}\n", "does not start with"),
        ("#cloud-config\nceph_openstack_ami: [\n", "not valid YAML"),
    ],
)
def test_a_wrong_join_section_keeps_the_node_out(text: str, words: str) -> None:
    with pytest.raises(JoinError, match=words):
        parse_join(text)


def test_damaged_gzip_is_an_error() -> None:
    with pytest.raises(JoinError, match="gzip"):
        parse_join(b"\x1f\x8b\x08garbage")


def test_user_data_is_never_written_for_a_token_the_node_would_refuse() -> None:
    with pytest.raises(JoinError):
        render_join_user_data("coajoin1.bad")
