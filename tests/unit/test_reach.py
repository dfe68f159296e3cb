"""The lines that tell a person how to reach the simulated instance from the host."""

from __future__ import annotations

from provision.settings import Settings
from sim.reach import PASSWORD_COMMAND, reach_lines

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
