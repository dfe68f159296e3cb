"""The golden guest disk: pure renderers and helpers of provision.guest (offline, no Docker)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from provision.image import guest

# busybox depmod's modules.dep for the cloud kernel (6.1), the NIC part: a dependency may be
# listed before its own dependencies (virtio before virtio_ring).
MODULES_DEP = """\
kernel/drivers/net/virtio_net.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/net/core/failover.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
"""
NIC_ORDER = [
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_ring",
    "virtio",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
]


# --- the disk ------------------------------------------------------------------------------------
def test_partition_table_layout() -> None:
    start, sectors = guest.disk_geometry(32)
    assert (start, sectors) == (2048, 63488)
    table = guest.partition_table(start, sectors)
    assert len(table) == 66 and table[-2:] == b"\x55\xaa"
    boot, _, ptype, _, lba, count = struct.unpack("<B3sB3sII", table[:16])
    assert (boot, ptype, lba, count) == (0x80, 0x0E, 2048, 63488)
    assert table[16:64] == bytes(48)
    with pytest.raises(ValueError):
        guest.partition_table(0, 10)


def test_guest_boot_files() -> None:
    init = guest.render_init()
    assert init.startswith("#!/bin/busybox sh\n") and init.rstrip().endswith("exec /sbin/init")
    assert "ttyS0" in guest.render_inittab() and "getty" in guest.render_inittab()
    cfg = guest.render_syslinux_cfg()
    append = next(line for line in cfg.splitlines() if "APPEND" in line)
    consoles = [w for w in append.split() if w.startswith("console=")]
    assert consoles[-1].startswith("console=ttyS0")  # /dev/console is the serial port
    assert guest.render_passwd().startswith("root:*:")  # locked: no password is shipped


def test_inittab_keeps_the_serial_getty() -> None:
    lines = guest.render_inittab().splitlines()
    assert "ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100" in lines
    assert not any("udhcpc" in line for line in lines)  # DHCP is /init's, never in the getty's way


# --- kernel modules --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("kernel/drivers/net/virtio_net.ko", "virtio_net"),
        ("kernel/drivers/net/virtio_net.ko.xz", "virtio_net"),
        ("kernel/drivers/char/hw_random/virtio-rng.ko.zst", "virtio_rng"),
        ("failover.ko.gz", "failover"),
        ("virtio_pci", "virtio_pci"),
    ],
)
def test_module_name(path: str, name: str) -> None:
    assert guest.module_name(path) == name


def test_parse_modules_dep() -> None:
    deps = guest.parse_modules_dep(MODULES_DEP + "# comment\n\n")
    assert deps["kernel/drivers/net/net_failover.ko"] == ("kernel/net/core/failover.ko",)
    assert deps["kernel/net/core/failover.ko"] == ()
    assert len(deps) == 9


def test_module_load_order_dependencies_first_each_once() -> None:
    deps = guest.parse_modules_dep(MODULES_DEP)
    order = guest.module_load_order(deps, guest.NIC_MODULES)
    names = [guest.module_name(p) for p in order]
    assert names == NIC_ORDER
    for i, path in enumerate(order):  # every dependency is loaded before its user
        assert set(deps[path]) <= set(order[:i])
    assert "virtio_blk" not in names  # only what the NIC needs


def test_module_load_order_builtin_and_missing() -> None:
    deps = guest.parse_modules_dep(MODULES_DEP)
    # built into the kernel: nothing to load for it (its dependencies would be built in too)
    assert guest.module_load_order({}, ["virtio_net"], ["kernel/drivers/net/virtio_net.ko"]) == []
    assert [guest.module_name(p) for p in guest.module_load_order(deps, ["net-failover"])] == ["failover", "net_failover"]
    with pytest.raises(ValueError, match="e1000"):
        guest.module_load_order(deps, ["e1000"])
    with pytest.raises(ValueError, match="loop"):
        guest.module_load_order({"a.ko": ("b.ko",), "b.ko": ("a.ko",)}, ["a"])


def test_module_copy_command() -> None:
    bb = "/w/x/bin/busybox"
    assert guest.module_copy_command("/m/virtio.ko", "/r/virtio.ko", bb) == "cp /m/virtio.ko /r/virtio.ko"
    assert guest.module_copy_command("/m/virtio.ko.xz", "/r/virtio.ko", bb) == "/w/x/bin/busybox xz -d -c /m/virtio.ko.xz > /r/virtio.ko"
    assert guest.module_copy_command("/m/virtio.ko.gz", "/r/virtio.ko", bb) == "/w/x/bin/busybox gzip -d -c /m/virtio.ko.gz > /r/virtio.ko"
    assert guest.module_copy_command("/m/a b.ko.zst", "/r/a.ko", bb) == "zstd -q -d -c '/m/a b.ko.zst' > /r/a.ko"
    with pytest.raises(ValueError):
        guest.module_copy_command("/m/virtio.o", "/r/virtio.ko", bb)


# --- /init -----------------------------------------------------------------------------------------
def test_init_loads_modules_in_order_before_dhcp() -> None:
    lines = guest.render_init(modules=NIC_ORDER).splitlines()
    insmods = [i for i, line in enumerate(lines) if line.startswith("insmod ")]
    assert [lines[i].split()[1] for i in insmods] == [f"/lib/modules/{m}.ko" for m in NIC_ORDER]
    assert insmods == list(range(insmods[0], insmods[0] + len(NIC_ORDER)))
    banner = next(i for i, line in enumerate(lines) if guest.BANNER in line)
    lo = lines.index("ip link set lo up")
    dhcp = next(i for i, line in enumerate(lines) if "udhcpc " in line)
    assert banner < insmods[0] and insmods[-1] < lo < dhcp < len(lines) - 1
    assert lines[-1] == "exec /sbin/init"
    # a failed insmod is reported, never fatal: the login prompt must come whatever
    assert all("|| echo" in lines[i] for i in insmods)


def test_init_runs_udhcpc_in_the_background_for_ever() -> None:
    line = next(line for line in guest.render_init(modules=NIC_ORDER).splitlines() if "udhcpc " in line)
    assert line.rstrip().endswith("&")  # busybox init and the getty do not wait for it
    assert line.startswith("(while :; do")  # restarted should it ever exit
    words = line.split()
    udhcpc = words[words.index("udhcpc") :]
    assert ["-i", "eth0"] == udhcpc[udhcpc.index("-i") : udhcpc.index("-i") + 2]
    assert ["-s", guest.UDHCPC_SCRIPT] == udhcpc[udhcpc.index("-s") : udhcpc.index("-s") + 2]
    assert "-f" in udhcpc and "-n" not in udhcpc and "-q" not in udhcpc  # keeps trying, keeps the lease
    assert "-t" in udhcpc and "-T" in udhcpc and "-A" in udhcpc  # bounded attempts, then retries


def test_init_without_modules_loads_none() -> None:
    assert "insmod" not in guest.render_init()


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX shell")
@pytest.mark.parametrize("text", [guest.render_init(modules=NIC_ORDER), guest.render_udhcpc_script()])
def test_scripts_parse(text: str, tmp_path: Path) -> None:
    script = tmp_path / "s"
    script.write_text(text)
    subprocess.run(["sh", "-n", str(script)], check=True, timeout=10)


# --- the udhcpc script -----------------------------------------------------------------------------
def test_udhcpc_script_configures_the_lease() -> None:
    text = guest.render_udhcpc_script()
    assert text.startswith("#!/bin/sh\n")
    assert 'ip addr add "$addr"' in text and 'addr="$ip/${mask:-32}"' in text
    assert 'ip route replace default via "$r" dev "$interface"' in text
    assert "> /dev/console" in text and repr(guest.ADDRESS_LINE_PREFIX) in text
    assert guest.ADDRESS_LINE_PREFIX == "cephdemo-guest: eth0 "


def _run_udhcpc_script(tmp_path: Path, event: str, **lease: str) -> tuple[str, list[str]]:
    """Run the script with ``sh``: a fake ``ip`` logs its arguments; console, /run and /etc are files."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    fake_ip = bindir / "ip"
    fake_ip.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/ip.log\n')
    fake_ip.chmod(0o755)
    console, run, etc = tmp_path / "console", tmp_path / "run", tmp_path / "etc"
    run.mkdir(exist_ok=True)
    etc.mkdir(exist_ok=True)
    text = (
        guest.render_udhcpc_script()
        .replace("/dev/console", str(console))
        .replace('"/run/', f'"{run}/')
        .replace("/etc/resolv.conf", str(etc / "resolv.conf"))
    )
    script = tmp_path / "udhcpc.script"
    script.write_text(text)
    (tmp_path / "ip.log").write_text("")
    env = {"PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}", "interface": "eth0", **lease}
    subprocess.run(["sh", str(script), event], env=env, check=True, timeout=10)
    printed = console.read_text() if console.exists() else ""
    return printed, (tmp_path / "ip.log").read_text().splitlines()


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX shell")
def test_udhcpc_script_prints_one_line_per_new_address(tmp_path: Path) -> None:
    lease = {"ip": "10.99.0.123", "mask": "24", "subnet": "255.255.255.0", "router": "10.99.0.1", "dns": "10.99.0.2"}
    printed, ip = _run_udhcpc_script(tmp_path, "bound", **lease)
    assert [line for line in printed.splitlines() if line] == ["cephdemo-guest: eth0 10.99.0.123/24"]
    assert "addr add 10.99.0.123/24 dev eth0" in ip
    assert "route replace default via 10.99.0.1 dev eth0" in ip
    assert (tmp_path / "etc" / "resolv.conf").read_text() == "nameserver 10.99.0.2\n"
    # a renewal of the same lease: the route is refreshed, the address left alone, nothing printed
    (tmp_path / "console").unlink()
    printed, ip = _run_udhcpc_script(tmp_path, "renew", **lease)
    assert printed == "" and ip == ["route replace default via 10.99.0.1 dev eth0"]
    # another address: reconfigured and printed again
    printed, ip = _run_udhcpc_script(tmp_path, "renew", **{**lease, "ip": "10.99.0.7"})
    assert printed.strip() == "cephdemo-guest: eth0 10.99.0.7/24"
    assert ip[:2] == ["-4 addr flush dev eth0", "addr add 10.99.0.7/24 dev eth0"]
    # deconfig forgets the address, so the next bound prints again
    printed, ip = _run_udhcpc_script(tmp_path, "deconfig")
    assert ip == ["-4 addr flush dev eth0", "link set eth0 up"] and not (tmp_path / "run" / "udhcpc.eth0").exists()


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX shell")
def test_udhcpc_script_ignores_other_events(tmp_path: Path) -> None:
    for event in ("leasefail", "nak"):
        printed, ip = _run_udhcpc_script(tmp_path, event)
        assert printed == "" and ip == []
