"""The lines that tell a person how to reach the simulated instance from the host."""

from __future__ import annotations

import shlex

from provision.settings import Settings
from sim.reach import PASSWORD_COMMAND, guest_ssh_argv, reach_lines

STATUS = {"private_ip": "10.77.0.4", "public_hostname": "ec2-54-214-1-2.compute-1.amazonaws.com", "ready": True}


def test_urls_use_the_private_address_the_certificate_names() -> None:
    lines = reach_lines(STATUS, Settings(), "/root/.ssh/coa-sim", "admin")
    text = "\n".join(lines)
    assert "dashboard  https://10.77.0.4/   user admin" in text
    assert "noVNC      https://10.77.0.4:13080/vnc_auto.html" in text
    assert "ssh        ssh -i /root/.ssh/coa-sim admin@10.77.0.4" in text
    assert PASSWORD_COMMAND in text and "ec2-54-214-1-2.compute-1.amazonaws.com" in text


def test_no_instance_says_how_to_launch_one() -> None:
    assert reach_lines({}, Settings(), "k", "admin") == ["no running instance: `invoke sim.up` launches one"]


def test_the_demo_servers_ssh_line_goes_through_the_instance_with_its_key() -> None:
    guest = {"id": "s1", "address": "192.168.233.10", "key_name": "cephdemo-key"}
    text = "\n".join(reach_lines(STATUS, Settings(), "/root/.ssh/coa-sim", "admin", guest))
    argv = guest_ssh_argv("/root/.ssh/coa-sim", "admin", "10.77.0.4", "192.168.233.10")
    assert f"guest      {shlex.join(argv)}" in text
    assert argv[-1] == "root@192.168.233.10" and argv[1:3] == ["-i", "/root/.ssh/coa-sim"]
    proxy = next(a for a in argv if a.startswith("ProxyCommand="))
    assert shlex.split(proxy.split("=", 1)[1]) == ["ssh", "-i", "/root/.ssh/coa-sim", "-W", "%h:%p", "admin@10.77.0.4"]


def test_options_apply_to_both_hops_and_a_keyless_server_says_so() -> None:
    argv = guest_ssh_argv("k", "admin", "10.0.0.1", "192.168.0.9", options=("BatchMode=yes",), guest_key="other")
    proxy = next(a for a in argv if a.startswith("ProxyCommand="))
    assert "BatchMode=yes" in proxy and argv[1:5] == ["-i", "other", "-o", "BatchMode=yes"]
    text = "\n".join(reach_lines(STATUS, Settings(), "k", "admin", {"address": "192.168.0.9", "key_name": None}))
    assert "192.168.0.9 (booted without a key pair: no SSH login)" in text
