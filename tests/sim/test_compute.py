"""Nova, Neutron and the dashboard in the simulated instance: the demo server boots from its Ceph volume.

Needs the ``sim`` session fixture (tests/sim/conftest.py). Checked as the owner would:
``openstack server list/show``, ``openstack console log show`` and ``ping`` inside the
instance; ``ssh`` from the host through the instance into the demo server, with the key of the
instance's EC2 key pair (the line ``sim.up`` prints); the dashboard from the host over HTTPS, with Debian's headless Chromium driven by
Selenium, after Python's ``ssl`` checked that port 443 serves the instance's own certificate
(tests/sim/test_tls.py checks it against the fingerprint the console printed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from typing import Any

import pytest

from provision import tls
from provision.image import guest, guest_ssh
from provision.openstack.identity import parse_openrc
from provision.openstack.ini import parse_ini
from provision.openstack.keypair import key_identity
from sim.reach import demo_server_record, guest_ssh_argv
from tests.sim.test_openstack import boot_volumes, cli, cli_json
from tests.sim.test_tls import fingerprint, tls_request

pytestmark = pytest.mark.docker

CONSOLE_WAIT_S = 120
#: Longer than RabbitMQ's heartbeat timeout (60 s) and the ~2 minutes after which it dropped
#: idle uWSGI clients while they offered AMQP heartbeats they could not send.
API_IDLE_S = 150


def demo_servers(sim: Any) -> list[dict[str, Any]]:
    """``openstack server list`` entries called like the demo server."""
    name = sim.settings.openstack.server_name
    return [s for s in cli_json(sim.target, "server list --name %s", f"^{name}$") if s["Name"] == name]


def console_log(sim: Any, want: str, timeout: float = CONSOLE_WAIT_S) -> str:
    """The demo server's console log once it contains ``want`` (the last one read otherwise)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = cli(sim.target, "console log show %s", sim.settings.openstack.server_name, check=False).stdout
        if want in text:
            break
        time.sleep(3)
    return text


def test_one_demo_server_active_with_the_boot_volume_as_root_disk(sim: Any) -> None:
    servers = demo_servers(sim)
    assert len(servers) == 1 and servers[0]["Status"] == "ACTIVE", servers
    show = cli_json(sim.target, "server show %s", servers[0]["ID"])
    vols = boot_volumes(sim)
    assert len(vols) == 1
    assert [v["id"] for v in show["volumes_attached"]] == [vols[0]["ID"]]
    assert show["image"] in ("", "N/A (booted from volume)")
    assert show["properties"].get("coa-instance-id") == sim.status()["instance_id"]  # server metadata


def test_qemu_opens_the_rbd_volume_with_the_instance_libvirt_secret(sim: Any) -> None:
    t = sim.target
    server = demo_servers(sim)[0]
    domain = cli_json(t, "server show %s", server["ID"])["OS-EXT-SRV-ATTR:instance_name"]
    xml = t.run(["virsh", "-c", "qemu:///system", "dumpxml", domain]).stdout
    volume = boot_volumes(sim)[0]["ID"]
    assert f"<source protocol='rbd' name='{sim.settings.volume_pool}/volume-{volume}'" in xml
    secret = parse_ini(t.read("/etc/cinder/cinder.conf").decode())[sim.settings.openstack.cinder_backend]["rbd_secret_uuid"]
    assert f"<secret type='ceph' uuid='{secret}'/>" in xml
    assert f"<auth username='{sim.settings.volume_pool}'>" in xml
    # No /dev/kvm in the instance: Nova runs the guest under TCG.
    kvm = t.run(["test", "-c", "/dev/kvm"], check=False).ok
    assert ("<domain type='kvm'" in xml) == kvm and ("<domain type='qemu'" in xml) == (not kvm)
    nova = parse_ini(t.read("/etc/nova/nova.conf").decode())
    assert nova["libvirt"]["virt_type"] == ("kvm" if kvm else "qemu")


def test_console_log_shows_the_guest_login_prompt(sim: Any) -> None:
    text = console_log(sim, "login:")
    assert guest.BANNER in text
    assert "login:" in text


def test_guest_gets_an_address_by_dhcp_and_the_instance_reaches_it(sim: Any) -> None:
    text = console_log(sim, guest.ADDRESS_LINE_PREFIX)
    m = re.search(re.escape(guest.ADDRESS_LINE_PREFIX) + r"(\d+\.\d+\.\d+\.\d+)/\d+", text)
    assert m, text[-800:]
    server = cli_json(sim.target, "server show %s", demo_servers(sim)[0]["ID"])
    assert m.group(1) in json.dumps(server["addresses"])
    ping = sim.target.run(["ping", "-c", "3", "-W", "2", m.group(1)], check=False)
    assert ping.ok, ping.stdout + ping.stderr


#: Both hops: no known-hosts file (the guest makes a new host key at every boot), no prompt, only the key given.
SSH_OPTIONS = ("StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "BatchMode=yes", "IdentitiesOnly=yes",
               "ConnectTimeout=30", "LogLevel=ERROR")


def ssh_to_guest(sim: Any, command: str, guest_key: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in the demo server over ssh from the host, through the instance (as ``sim.up``'s line does)."""
    record = demo_server_record(sim.target, sim.settings)
    assert record and record.get("address"), record
    ip = sim.status(checks=False)["private_ip"]
    argv = guest_ssh_argv(sim.key_path, sim.login_user(), ip, str(record["address"]), SSH_OPTIONS, guest_key)
    return subprocess.run([*argv, command], capture_output=True, text=True, timeout=180)


def test_the_owner_logs_in_to_the_demo_server_with_the_instances_key_through_the_instance(sim: Any) -> None:
    text = console_log(sim, guest_ssh.HOST_KEY_LINE_PREFIX)
    assert guest_ssh.KEY_LINE_PREFIX + "ssh-" in text, text[-800:]
    server = demo_servers(sim)[0]
    record = demo_server_record(sim.target, sim.settings)
    assert record is not None and record["id"] == server["ID"], record
    assert record["key_name"] == sim.settings.openstack.keypair_name
    r = ssh_to_guest(sim, "hostname; cat /sys/block/vda/serial; echo; cat /root/.ssh/authorized_keys")
    assert r.returncode == 0, r.stderr
    host, serial, key = r.stdout.splitlines()[:3]
    assert host == "cephdemo-guest"
    # Nova gives the volume's id as the disk's serial (virtio-blk keeps 20 characters): the root disk is the Ceph volume.
    volumes = boot_volumes(sim)
    assert len(serial) == 20 and volumes[0]["ID"].startswith(serial), (serial, volumes)
    own = subprocess.run(["ssh-keygen", "-y", "-f", sim.key_path], capture_output=True, text=True, check=True).stdout
    assert key_identity(key) == key_identity(own)


def test_the_demo_server_refuses_another_key(sim: Any, tmp_path: Any) -> None:
    other = str(tmp_path / "other")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other], check=True)
    r = ssh_to_guest(sim, "true", guest_key=other)
    assert r.returncode == 255 and "Permission denied (publickey)" in r.stderr, (r.returncode, r.stderr)


def uwsgi_heartbeat_drops(target: Any) -> list[str]:
    """RabbitMQ's log lines closing a uWSGI app's connection for missed heartbeats."""
    log = target.run("cat /var/log/rabbitmq/rabbit@*.log", check=False).stdout.splitlines()
    missed = {ln.split()[3] for ln in log if "missed heartbeats from client" in ln and len(ln.split()) > 3}
    return [ln for ln in log if "closing AMQP connection" in ln and " - uwsgi:" in ln and ln.split()[3] in missed]


def test_novnc_url_uses_the_public_hostname_even_after_the_api_idled(sim: Any) -> None:
    """The dashboard's Console tab: an RPC call from nova-api (a uWSGI app) to nova-compute.

    RabbitMQ drops a client that sends no heartbeat for 60 s; nova-api idles between requests,
    so the call is made, the API left idle for longer than that, and the call made again.
    """
    public = sim.status()["public_hostname"]
    # Issue 14: the browser opens noVNC through its TLS proxy on the public name.
    base = f"https://{public}:{sim.settings.tls.novnc_port}/vnc_auto.html"
    nova = parse_ini(sim.target.read("/etc/nova/nova.conf").decode())
    assert nova["vnc"]["novncproxy_base_url"] == base
    earlier = len(uwsgi_heartbeat_drops(sim.target))  # the log is append-only
    for attempt in range(2):
        if attempt:
            time.sleep(API_IDLE_S)
        url = cli(sim.target, "console url show --novnc -f value -c url %s", sim.settings.openstack.server_name).stdout.strip()
        assert url.startswith(base + "?path=%3Ftoken%3D"), url
    assert uwsgi_heartbeat_drops(sim.target)[earlier:] == []
    # The console proxy itself answers on the instance (on loopback only: see tests/sim/test_tls.py).
    code = sim.target.run("curl -s -o /dev/null -w '%%{http_code}' --max-time 10 http://127.0.0.1:%s/vnc_auto.html",
                          str(sim.settings.openstack.novnc_port), check=False).stdout
    assert code == "200"


def test_services_fit_the_instance_memory(sim: Any, docker_client: Any) -> None:
    """Ceph, OpenStack and the guest together stay well inside the instance type's memory."""
    c = docker_client.containers.get(sim.container)
    stats = c.stats(stream=False)
    limit = c.attrs["HostConfig"]["Memory"]
    used = stats["memory_stats"]["usage"] - stats["memory_stats"].get("stats", {}).get("cache", 0)
    print(f"instance memory: {used / 2**20:.0f} MiB used of {limit / 2**20:.0f} MiB")
    assert used < 0.6 * limit


# --- the dashboard, from the host ----------------------------------------------------------------------
def _browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("the browser test needs Debian's chromium and chromium-driver (apt install chromium chromium-driver)")
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager try to download anything
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    # The certificate is self-signed: the tests that use the browser first check with Python's ssl
    # that port 443 serves exactly the certificate whose fingerprint the console printed.
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1000",
                "--ignore-certificate-errors"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=opts)


def test_browser_logs_in_to_the_dashboard_and_sees_the_server(sim: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    ip = sim.status(checks=False)["private_ip"]
    password = parse_openrc(sim.target.read("/root/openrc").decode())["OS_PASSWORD"]
    _, der = tls_request(sim, sim.settings.tls.dashboard_port)  # verified for the public name
    # The instance's own certificate (test_tls checks it against the console's line; this instance,
    # rebooted by the build's test stage, may no longer hold that line in its console's last 64 KiB).
    assert fingerprint(der) == tls.served_fingerprint(sim.target, sim.settings), "port 443 serves another certificate than the instance's"
    browser = _browser()
    try:
        browser.set_page_load_timeout(120)
        browser.get(f"http://{ip}/")  # plain HTTP: redirected to HTTPS
        WebDriverWait(browser, 60).until(ec.presence_of_element_located((By.ID, "id_username")))
        assert browser.current_url.startswith(f"https://{ip}/auth/login/"), browser.current_url
        browser.get(f"https://{ip}/")
        WebDriverWait(browser, 60).until(ec.presence_of_element_located((By.ID, "id_username")))
        assert "/auth/login/" in browser.current_url
        browser.find_element(By.ID, "id_username").send_keys("admin")
        browser.find_element(By.ID, "id_password").send_keys(password)
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        WebDriverWait(browser, 90).until(lambda b: "/auth/login/" not in b.current_url)
        browser.get(f"https://{ip}/project/instances/")
        WebDriverWait(browser, 90).until(ec.presence_of_element_located((By.ID, "instances")))
        page = browser.page_source
        assert sim.settings.openstack.server_name in page
        assert "Active" in page
    finally:
        browser.quit()


def test_dashboard_refuses_a_wrong_password(sim: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    ip = sim.status(checks=False)["private_ip"]
    _, der = tls_request(sim, sim.settings.tls.dashboard_port)
    assert fingerprint(der) == tls.served_fingerprint(sim.target, sim.settings)
    browser = _browser()
    try:
        browser.get(f"https://{ip}/auth/login/")
        WebDriverWait(browser, 60).until(ec.presence_of_element_located((By.ID, "id_username")))
        browser.find_element(By.ID, "id_username").send_keys("admin")
        browser.find_element(By.ID, "id_password").send_keys("not-the-password")
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        WebDriverWait(browser, 60).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".alert-danger, .error")))
        assert "/auth/login/" in browser.current_url
    finally:
        browser.quit()
