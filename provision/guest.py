"""The golden guest: a tiny bootable disk image built offline from distribution packages.

A raw disk of 32 MiB: an MBR (SYSLINUX's ``mbr.bin``) with one bootable FAT partition at
1 MiB holding SYSLINUX, the kernel of ``linux-image-cloud-amd64`` and an initramfs made
of ``busybox-static``, whose ``/init`` mounts the pseudo filesystems, prints a banner and
hands over to busybox init, which runs a getty with ``login:`` on ``ttyS0``.

The packages are downloaded with ``apt-get download`` and unpacked in a scratch
directory (nothing is installed, nothing stays in the image); the disk is built
unprivileged (``mkfs.fat -C``, ``syslinux --install`` on the partition image, ``mcopy``,
``dd``). Provisioning registers it in Glance, so it lives in the ``images`` pool; the boot
agent clones the instance's bootable volume from it.

``render_*`` and :func:`partition_table` are pure; :func:`build` runs on a Target.
"""

from __future__ import annotations

import struct
import time

from .settings import Settings
from .target import Target

#: Scratch directory on the target (removed by :func:`clean`).
WORK = "/var/tmp/coa-guest"
DISK_MIB = 32
PART_START_LBA = 2048  # 1 MiB
SECTOR = 512
#: FAT16 with LBA addressing.
PART_TYPE = 0x0E
KERNEL_META = "linux-image-cloud-amd64"
TOOL_PACKAGES = ("busybox-static", "syslinux", "syslinux-common", "mtools", "dosfstools")
DESCRIPTION = "cephdemo guest: Debian cloud kernel + busybox initramfs, login on ttyS0 (built offline)"
BANNER = "cephdemo guest (ceph-openstack-ami): booted from a Ceph RBD volume"


def render_init(banner: str = BANNER) -> str:
    """The initramfs ``/init``: pseudo filesystems, busybox applets, a banner, then busybox init."""
    return (
        "#!/bin/busybox sh\n"
        "/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin /root\n"
        "/bin/busybox mount -t proc proc /proc\n"
        "/bin/busybox mount -t sysfs sysfs /sys\n"
        "/bin/busybox mount -t devtmpfs devtmpfs /dev\n"
        "/bin/busybox --install -s\n"
        "hostname cephdemo-guest\n"
        f"echo '{banner}'\n"
        'echo "kernel $(uname -r), $(grep -c ^processor /proc/cpuinfo) cpu(s)"\n'
        "exec /sbin/init\n"
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
    """Accounts of the guest: root, locked (the prompt is a demonstration; the guest has no network)."""
    return "root:*:0:0:root:/root:/bin/sh\n"


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
    target.run("cd %s && timeout -k 5 600 apt-get download -q %s %s %s %s %s %s", f"{work}/debs", kernel_pkg, *TOOL_PACKAGES)
    target.run("for d in %s/*.deb; do dpkg-deb -x \"$d\" %s || exit 1; done", f"{work}/debs", x)
    kernel = target.run("ls %s/boot/vmlinuz-* | head -n 1", x).stdout.strip()
    # initramfs
    for d in ("bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "usr/bin", "usr/sbin"):
        target.run(["install", "-d", f"{root}/{d}"])
    target.run(["cp", f"{x}/bin/busybox", f"{root}/bin/busybox"])
    target.put(f"{root}/init", render_init(), 0o755)
    for name, text in (("inittab", render_inittab()), ("passwd", render_passwd()), ("group", render_group()), ("issue", render_issue())):
        target.put(f"{root}/etc/{name}", text, 0o644)
    target.run("cd %s && find . | %s cpio -o -H newc 2>/dev/null | gzip -9 > %s", root, f"{x}/bin/busybox", f"{work}/initrd.img")
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
        f"busybox initramfs {int(sizes[1])} KiB) in {time.monotonic() - start:.1f}s"
    )
    return disk, summary


def clean(target: Target, work: str = WORK) -> None:
    """Remove the scratch directory."""
    target.run(["rm", "-rf", work])
