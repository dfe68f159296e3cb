"""The golden guest: a tiny bootable disk image built offline from distribution packages.

A raw disk of 32 MiB: an MBR (SYSLINUX's ``mbr.bin``) with one bootable FAT partition at
1 MiB holding SYSLINUX, the kernel of ``linux-image-cloud-amd64`` and an initramfs made
of ``busybox-static`` and the kernel's virtio-net modules. Its ``/init`` mounts the pseudo
filesystems, prints a banner, loads the NIC modules (virtio_pci and virtio_net are
modules, not built in, in Debian's cloud kernel) in dependency order, brings up ``lo``
and ``eth0``, starts busybox ``udhcpc`` on ``eth0`` in the background (retrying until a
DHCP server answers; its script configures address and default route and prints one
line starting with :data:`ADDRESS_LINE_PREFIX` on the console) and hands over to busybox
init, which runs a getty with ``login:`` on ``ttyS0``. In the background, too, it reads the
server's SSH key from Nova's config drive and starts Dropbear (:mod:`provision.image.guest_ssh`).

The packages are downloaded with ``apt-get download`` and unpacked in a scratch
directory (nothing is installed, nothing stays in the image); the module dependencies
come from ``modules.dep`` written by busybox ``depmod`` in that directory. The disk is
built unprivileged (``mkfs.fat -C``, ``syslinux --install`` on the partition image,
``mcopy``, ``dd``). Provisioning registers it in Glance, so it lives in the ``images``
pool; the boot agent clones the instance's bootable volume from it.

``render_*``, the module helpers (:func:`parse_modules_dep`, :func:`module_load_order`,
:func:`module_copy_command`) and :func:`partition_table` are pure; :func:`build` runs on a
Target.
"""

from __future__ import annotations

import posixpath
import shlex
import struct
import time
from typing import Iterable, Mapping, Sequence

from ..settings import Settings
from ..target import Target, command_line
from .guest_ssh import CONFIG_DRIVE_MODULES, DEPENDS_ONLY, GUEST_INTERP, GUEST_LOADER, KEYS_SCRIPT, SSH_PACKAGE, dropbear_files, parse_depends, render_keys_script, render_ssh_start

#: Scratch directory on the target (removed by :func:`clean`).
WORK = "/var/tmp/coa-guest"
DISK_MIB = 32
PART_START_LBA = 2048  # 1 MiB
SECTOR = 512
#: FAT16 with LBA addressing.
PART_TYPE = 0x0E
KERNEL_META = "linux-image-cloud-amd64"
TOOL_PACKAGES = ("busybox-static", "syslinux", "syslinux-common", "mtools", "dosfstools")
DESCRIPTION = ("cephdemo guest: Debian cloud kernel + busybox initramfs, DHCP on eth0, login on ttyS0, "
               "SSH (Dropbear, the key pair's key from the config drive; built offline)")
BANNER = "cephdemo guest (ceph-openstack-ami): booted from a Ceph RBD volume"
#: The NIC Nova gives the guest is virtio-net on PCI (Debian 12's cloud kernel has both drivers as modules).
NIC_MODULES = ("virtio_pci", "virtio_net")
NIC = "eth0"
#: The boot volume as ``/dev/vda`` in the guest (its ``serial`` is the Cinder volume's id).
DISK_MODULES = ("virtio_blk",)
#: Where /init finds the (uncompressed) modules inside the initramfs, one flat directory.
INITRD_MODULE_DIR = "/lib/modules"
UDHCPC_SCRIPT = "/etc/udhcpc.script"
#: The console line the DHCP script prints once a lease is bound: this prefix, then ``ADDRESS/PREFIXLEN``.
ADDRESS_LINE_PREFIX = "cephdemo-guest: eth0 "
#: udhcpc per attempt: DISCOVERs sent, seconds between them; then seconds to wait before the next attempt.
DHCP_DISCOVERS, DHCP_DISCOVER_INTERVAL_S, DHCP_RETRY_AFTER_S = 3, 3, 10
#: Module file suffixes: how to decompress at build time (busybox applets; zstd has none).
MODULE_SUFFIXES = {".ko": None, ".ko.xz": "xz", ".ko.gz": "gzip", ".ko.zst": "zstd"}


def render_init(banner: str = BANNER, modules: Sequence[str] = ()) -> str:
    """The initramfs ``/init``: pseudo filesystems, busybox applets, a banner, the NIC, SSH, then busybox init.

    ``modules`` are module names in load order (dependencies first); each is
    ``{INITRD_MODULE_DIR}/NAME.ko``. A module that fails to load is reported and skipped, so
    the login prompt comes up whatever the network does. udhcpc runs in the foreground of a
    background loop: it retries by itself forever, and the loop restarts it should it exit
    (e.g. ``eth0`` not there yet); nothing of it delays busybox init and the getty, nor does
    the SSH start (key from the config drive, host key, Dropbear), also in the background.
    """
    dhcp = (
        f"udhcpc -f -i {NIC} -s {UDHCPC_SCRIPT} -t {DHCP_DISCOVERS} -T {DHCP_DISCOVER_INTERVAL_S} "
        f"-A {DHCP_RETRY_AFTER_S}"
    )
    lines = [
        "#!/bin/busybox sh",
        "/bin/busybox mkdir -p /proc /sys /dev /tmp /run /sbin /usr/bin /usr/sbin /root",
        "/bin/busybox mount -t proc proc /proc",
        "/bin/busybox mount -t sysfs sysfs /sys",
        "/bin/busybox mount -t devtmpfs devtmpfs /dev",
        "/bin/busybox mkdir -p /dev/pts",
        "/bin/busybox mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts",
        "/bin/busybox --install -s",
        "hostname cephdemo-guest",
        f"echo '{banner}'",
        'echo "kernel $(uname -r), $(grep -c ^processor /proc/cpuinfo) cpu(s)"',
        "# the NIC: its drivers, dependencies first",
    ]
    lines += [f"insmod {INITRD_MODULE_DIR}/{m}.ko || echo 'cephdemo-guest: cannot load module {m}'" for m in modules]
    lines += ["# SSH in the background: the key from the config drive, this boot's host key, Dropbear", render_ssh_start()]
    lines += [
        "ip link set lo up",
        f"i=0; while [ ! -e /sys/class/net/{NIC} ] && [ $i -lt 20 ]; do usleep 100000; i=$((i + 1)); done",
        f"[ -e /sys/class/net/{NIC} ] || echo 'cephdemo-guest: no {NIC} yet (DHCP keeps trying)'",
        "# DHCP in the background, for ever; its script prints the address on /dev/console",
        f"(while :; do ip link set {NIC} up 2>/dev/null; {dhcp}; sleep {DHCP_RETRY_AFTER_S}; done) "
        "</dev/null >/run/udhcpc.log 2>&1 &",
        "exec /sbin/init",
    ]
    return "\n".join(lines) + "\n"


def render_udhcpc_script(prefix: str = ADDRESS_LINE_PREFIX) -> str:
    """The udhcpc event script: configure the lease (address, netmask, default route, DNS).

    udhcpc calls it with the event in ``$1`` and the lease in the environment (``ip``,
    ``mask`` as a prefix length, ``router``, ``dns``, ``domain``, ``broadcast``). When the
    address changes (first lease, or a renewal with another address) it prints one line,
    ``prefix`` + ``ADDRESS/PREFIXLEN``, on ``/dev/console``, after a newline (``login:`` may
    already be there, without one); a plain renewal prints nothing.
    """
    return (
        "#!/bin/sh\n"
        "# udhcpc event script of the cephdemo guest: $1 is the event, the lease is in the environment.\n"
        'state="/run/udhcpc.$interface"\n'
        'case "$1" in\n'
        "deconfig)\n"
        '    ip -4 addr flush dev "$interface"\n'
        '    ip link set "$interface" up\n'
        '    rm -f "$state"\n'
        "    ;;\n"
        "bound|renew)\n"
        "    # $mask is the prefix length udhcpc derives from the subnet option (no option: a host address)\n"
        '    addr="$ip/${mask:-32}"\n'
        '    if [ "$(cat "$state" 2>/dev/null)" != "$addr" ]; then\n'
        '        ip -4 addr flush dev "$interface"\n'
        '        ip addr add "$addr" ${broadcast:+broadcast $broadcast} dev "$interface"\n'
        '        echo "$addr" > "$state"\n'
        # a newline first: the getty's prompt may already be on the console, without one
        f"        printf '\\n%s%s\\n' {shlex.quote(prefix)} \"$addr\" > /dev/console\n"
        "    fi\n"
        '    for r in $router; do ip route replace default via "$r" dev "$interface" && break; done\n'
        '    { [ -n "$domain" ] && echo "search $domain"; for d in $dns; do echo "nameserver $d"; done; } > /etc/resolv.conf\n'
        "    ;;\n"
        "esac\n"
        "exit 0\n"
    )


def render_inittab() -> str:
    """busybox init: a getty with a login prompt on the serial console."""
    return (
        "::sysinit:/bin/mount -t tmpfs tmpfs /tmp\n"
        "ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100\n"
        "::ctrlaltdel:/sbin/reboot\n"
        "::shutdown:/bin/umount -a -r\n"
    )


def render_passwd() -> str:
    """Accounts of the guest: root without a password (none is shipped): it logs in with the server's key only."""
    return "root:*:0:0:root:/root:/bin/sh\n"


def render_nsswitch() -> str:
    """glibc's name service (Dropbear looks the user up): local files only."""
    return "passwd: files\ngroup: files\nshadow: files\nhosts: files\n"


def render_group() -> str:
    """Groups of the guest."""
    return "root:x:0:\n"


def render_issue() -> str:
    """The text above the login prompt."""
    return "\ncephdemo guest \\n (\\l)\n\n"


def render_syslinux_cfg() -> str:
    """SYSLINUX: boot the kernel with the initramfs, console on the serial port."""
    return (
        "SERIAL 0 115200\n"
        "DEFAULT linux\n"
        "PROMPT 0\n"
        "TIMEOUT 1\n"
        "LABEL linux\n"
        "  KERNEL vmlinuz\n"
        "  INITRD initrd.img\n"
        # The last console= is /dev/console (where /init's banner goes): the serial port.
        "  APPEND console=tty0 console=ttyS0,115200 quiet panic=10\n"
    )


def partition_table(start_lba: int, sectors: int, ptype: int = PART_TYPE, bootable: bool = True) -> bytes:
    """The 66 bytes at offset 446 of an MBR: one partition entry, three empty ones and 0x55AA.

    CHS fields hold the "use LBA" marker (0xFE 0xFF 0xFF), as modern partitioners write for
    partitions beyond what CHS can say; SYSLINUX's MBR boots by LBA.
    """
    if start_lba <= 0 or sectors <= 0 or start_lba + sectors > 0xFFFFFFFF:
        raise ValueError("partition out of range")
    chs = bytes((0xFE, 0xFF, 0xFF))
    entry = struct.pack("<B3sB3sII", 0x80 if bootable else 0x00, chs, ptype, chs, start_lba, sectors)
    return entry + bytes(16 * 3) + b"\x55\xaa"


def disk_geometry(disk_mib: int = DISK_MIB) -> tuple[int, int]:
    """(partition start LBA, partition sectors) for a disk of ``disk_mib`` with one partition from 1 MiB."""
    total = disk_mib * 1024 * 1024 // SECTOR
    return PART_START_LBA, total - PART_START_LBA


def module_name(path: str) -> str:
    """The kernel's name of a module file: ``kernel/drivers/net/virtio_net.ko.xz`` -> ``virtio_net``."""
    base = posixpath.basename(path)
    for suffix in sorted(MODULE_SUFFIXES, key=len, reverse=True):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base.replace("-", "_")


def parse_modules_dep(text: str) -> dict[str, tuple[str, ...]]:
    """``modules.dep`` as {module path: the paths it depends on} (paths relative to the modules directory)."""
    deps: dict[str, tuple[str, ...]] = {}
    for line in text.splitlines():
        if ":" not in line or line.lstrip().startswith("#"):
            continue
        path, _, rest = line.partition(":")
        deps[path.strip()] = tuple(rest.split())
    return deps


def module_load_order(deps: Mapping[str, Sequence[str]], wanted: Sequence[str], builtin: Iterable[str] = ()) -> list[str]:
    """The module paths to load for ``wanted`` (module names), every dependency before its users, each once.

    ``builtin`` holds the paths of ``modules.builtin``: a wanted module built into the
    kernel needs nothing loaded.

    Raises:
        ValueError: a wanted module is neither a module nor built in, or the dependencies loop.
    """
    by_name = {module_name(p): p for p in deps}
    built_in = {module_name(p) for p in builtin}
    order: list[str] = []

    def visit(path: str, stack: tuple[str, ...]) -> None:
        if path in order:
            return
        if path in stack:
            raise ValueError(f"module dependency loop: {' -> '.join(stack + (path,))}")
        for dep in deps.get(path, ()):
            visit(dep, stack + (path,))
        order.append(path)

    for name in wanted:
        key = module_name(name)
        if key in built_in:
            continue
        if key not in by_name:
            raise ValueError(f"kernel module {name} is neither in modules.dep nor built in")
        visit(by_name[key], ())
    return order


def module_copy_command(src: str, dst: str, busybox: str) -> str:
    """The shell command putting module ``src`` uncompressed at ``dst`` (busybox insmod wants plain ``.ko``).

    ``.xz`` and ``.gz`` are decompressed with the unpacked busybox's applets; ``.zst``
    needs ``zstd`` on the target.
    """
    for suffix, tool in sorted(MODULE_SUFFIXES.items(), key=lambda kv: len(kv[0]), reverse=True):
        if src.endswith(suffix):
            if tool is None:
                return command_line(["cp", src, dst])
            if tool == "zstd":
                return command_line("zstd -q -d -c %s > %s", src, dst)
            return command_line("%s %s -d -c %s > %s", busybox, tool, src, dst)
    raise ValueError(f"not a kernel module: {src}")


def _kernel_package(target: Target) -> str:
    """The versioned kernel package ``linux-image-cloud-amd64`` depends on today."""
    out = target.run(["apt-cache", "depends", KERNEL_META], timeout=60).stdout
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Depends:") and "linux-image-" in line:
            return line.split(":", 1)[1].strip()
    raise RuntimeError(f"cannot resolve {KERNEL_META}: {out[:200]}")


def build(target: Target, settings: Settings, work: str = WORK) -> tuple[str, str]:
    """Build the guest disk on the target; return (path of the raw disk, one-line summary)."""
    start = time.monotonic()
    x, root = f"{work}/x", f"{work}/root"
    target.run(["rm", "-rf", work])
    target.run(["install", "-d", "-m", "0755", work, f"{work}/debs", x, root])
    target.run(["chown", "_apt", f"{work}/debs"], check=False)  # apt downloads as _apt when it can
    kernel_pkg = _kernel_package(target)
    ssh_pkgs = [SSH_PACKAGE, *parse_depends(target.run(["apt-cache", "depends", *DEPENDS_ONLY, SSH_PACKAGE], timeout=60).stdout)]
    packages = [kernel_pkg, *TOOL_PACKAGES, *ssh_pkgs]
    target.run("cd %s && timeout -k 5 600 apt-get download -q" + " %s" * len(packages), f"{work}/debs", *packages)
    target.run("for d in %s/*.deb; do dpkg-deb -x \"$d\" %s || exit 1; done", f"{work}/debs", x)
    kernel = target.run("ls %s/boot/vmlinuz-* | head -n 1", x).stdout.strip()
    busybox = f"{x}/bin/busybox"
    # the NIC modules and their dependencies (the package ships no modules.dep: busybox depmod writes it)
    kver = posixpath.basename(kernel).removeprefix("vmlinuz-")
    moddir = f"{x}/lib/modules/{kver}"
    target.run([busybox, "depmod", "-b", x, kver], timeout=120)
    builtin = target.read(f"{moddir}/modules.builtin").decode() if target.exists(f"{moddir}/modules.builtin") else ""
    wanted = (*NIC_MODULES, *DISK_MODULES, *CONFIG_DRIVE_MODULES)
    order = module_load_order(parse_modules_dep(target.read(f"{moddir}/modules.dep").decode()), wanted, builtin.split())
    # initramfs
    for d in ("bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "run", "root", "usr/bin", "usr/sbin", INITRD_MODULE_DIR.lstrip("/")):
        target.run(["install", "-d", f"{root}/{d}"])
    target.run(["cp", busybox, f"{root}/bin/busybox"])
    for path in order:
        target.run(module_copy_command(f"{moddir}/{path}", f"{root}{INITRD_MODULE_DIR}/{module_name(path)}.ko", busybox), timeout=60)
    ssh_files = dropbear_files(target, x)
    dirs = sorted({posixpath.dirname(p) for p in (*(dst for _, dst in ssh_files), GUEST_INTERP)})
    target.run(["install", "-d", *(f"{root}{d}" for d in dirs)])
    for src, dst in ssh_files:
        target.run(["cp", "-L", src, f"{root}{dst}"])
    target.run(["ln", "-sf", GUEST_LOADER, f"{root}{GUEST_INTERP}"])
    target.run(["chmod", "0700", f"{root}/root"])
    target.put(f"{root}/init", render_init(modules=[module_name(p) for p in order]), 0o755)
    target.put(f"{root}{UDHCPC_SCRIPT}", render_udhcpc_script(), 0o755)
    target.put(f"{root}{KEYS_SCRIPT}", render_keys_script(), 0o755)
    for name, text in (("inittab", render_inittab()), ("passwd", render_passwd()), ("group", render_group()), ("issue", render_issue()),
                       ("nsswitch.conf", render_nsswitch()), ("shells", "/bin/sh\n")):
        target.put(f"{root}/etc/{name}", text, 0o644)
    target.run("cd %s && find . | %s cpio -o -H newc 2>/dev/null | gzip -9 > %s", root, busybox, f"{work}/initrd.img")
    # the FAT partition: syslinux, kernel, initramfs
    start_lba, sectors = disk_geometry()
    part, disk = f"{work}/part.img", f"{work}/disk.raw"
    target.put(f"{work}/syslinux.cfg", render_syslinux_cfg(), 0o644)
    target.run(["cp", kernel, f"{work}/vmlinuz"])
    path_env = f"PATH={x}/usr/bin:{x}/sbin:/usr/sbin:/usr/bin:/sbin:/bin"
    target.run(["env", path_env, f"{x}/sbin/mkfs.fat", "-n", "CEPHDEMO", "-C", part, str(sectors * SECTOR // 1024)], timeout=60)
    target.run(["env", path_env, f"{x}/usr/bin/syslinux", "--install", part], timeout=60)
    target.run(["env", path_env, "MTOOLS_SKIP_CHECK=1", f"{x}/usr/bin/mcopy", "-i", part,
                f"{work}/vmlinuz", f"{work}/initrd.img", f"{work}/syslinux.cfg", "::/"], timeout=60)
    # the disk: MBR code, partition table, the partition at 1 MiB
    target.run(["truncate", "-s", f"{DISK_MIB}M", disk])
    target.run(["dd", f"if={part}", f"of={disk}", "bs=512", f"seek={start_lba}", "conv=notrunc,sparse", "status=none"], timeout=60)
    target.run(["dd", f"if={x}/usr/lib/syslinux/mbr/mbr.bin", f"of={disk}", "bs=440", "count=1", "conv=notrunc", "status=none"])
    target.put(f"{work}/ptable.bin", partition_table(start_lba, sectors), 0o644)
    target.run(["dd", f"if={work}/ptable.bin", f"of={disk}", "bs=1", "seek=446", "count=66", "conv=notrunc", "status=none"])
    sizes = target.run("du -k --apparent-size %s %s %s | awk '{print $1}'", f"{work}/vmlinuz", f"{work}/initrd.img", disk).stdout.split()
    summary = (
        f"built {DISK_MIB} MiB guest disk ({kernel_pkg}: kernel {int(sizes[0]) // 1024} MiB, "
        f"busybox initramfs {int(sizes[1])} KiB with {len(order)} modules and Dropbear) in {time.monotonic() - start:.1f}s"
    )
    return disk, summary


def clean(target: Target, work: str = WORK) -> None:
    """Remove the scratch directory."""
    target.run(["rm", "-rf", work])
