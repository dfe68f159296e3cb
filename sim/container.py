"""How a Docker container plays an EC2 instance: every difference the container forces, named once with its reason.

An EC2 instance is a virtual machine with its own kernel, devices and disks; the sim's
instance is a systemd container on the host's kernel. What that forces, and why:

* **No ``privileged``**: engines whose capability bounding set lacks CAP_SYS_RESOURCE (as
  here) refuse it, so every other capability is granted instead (:data:`RUN_OPTIONS`).
* **seccomp and AppArmor unconfined**: as for ``privileged``; systemd and the services
  mount, make namespaces and set sysctls (:data:`RUN_OPTIONS`).
* **A private cgroup namespace**: systemd must own its cgroup tree (:data:`RUN_OPTIONS`).
* **tmpfs on /run, /run/lock and /tmp**: systemd expects them empty at each boot, as after
  a VM's reboot (:data:`RUN_OPTIONS`).
* **Stop signal SIGRTMIN+3**: systemd's "halt" signal, so ``docker stop`` is a clean
  shutdown (:data:`RUN_OPTIONS`, :data:`STOP_TIMEOUT_S`).
* **/dev/net/tun given**: an instance has it (libvirt plugs each guest's NIC in as a tap
  device); a container only when given. /dev/kvm is not: KVM is unusable nested here, so
  Nova runs its guests under TCG (:data:`RUN_OPTIONS`).
* **/proc/sys writable**: os-vif sets per-bridge sysctls of the container's own network
  namespace when Nova plugs a guest's NIC (:data:`READONLY_PATHS`).
* **``container=docker`` in the environment**: how systemd knows it runs in a container
  and skips what needs a kernel of its own (:data:`ENVIRONMENT`).
* **Memory limit = the instance type's memory, no swap**: a container has no RAM of its
  own (:func:`host_config`).
* **The data disk is a Docker volume**: ``docker commit`` writes sparse files out in
  full (a 10 GiB OSD file with 8 MiB of data became a 10.9 GB layer in 2 minutes), so
  the OSDs' files live on a volume, copied sparsely when an image is made, as EBS
  snapshots the volumes of an AMI's block-device mapping (:data:`DATA_DISK_PATH`).
* **The hostname is set at creation**: no DHCP gives it; the first label of the
  instance's private DNS name, as EC2's DHCP does (``sim.instance``).
* **Reboot is ``docker stop`` then ``start``**: the container has no kernel to restart;
  same container, same disk, same address (``sim.instance``).
* **169.254.169.254 lives on the sim's bridge**: no hypervisor answers a link-local
  address for a container; the metadata server listens there and containers reach it
  through their gateway (``sim.cloud``).
* **A terminal as the console**: an instance's serial console is where systemd, our units
  and the owner's one admin-password line print, and what ``GetConsoleOutput`` returns; a
  container has no ``/dev/console`` unless it gets a terminal, whose output Docker keeps as
  the container's log, which the sim daemon serves as the console (:data:`CONSOLE_TTY`,
  ``sim.console``).
* **Units that need a kernel or devices of their own are masked** (udev, gettys, module
  loading): in ``Dockerfile.ubuntu``, which says why.
* **cloud-init is told what DMI would tell it**: the instance runs the distribution's
  cloud-init against the sim's metadata service, as on EC2; a container has no DMI, so
  ``sim/files/cloud.cfg.d/95-sim-container.cfg`` names the Ec2 datasource (ds-identify would
  find none), names the platform (``sim/files/cloud-init/DataSourceEc2.py``: cloud-init's own
  datasource answering "aws", without which it skips the IMDSv2 token), and leaves the
  network to Docker, a line each with its reason. Nothing else of cloud-init differs.
"""

from __future__ import annotations

from typing import Any

#: How a container must run to host systemd on this engine (see the module docstring).
RUN_OPTIONS: dict[str, Any] = {
    "cap_add": ["ALL"],
    "cap_drop": ["SYS_RESOURCE"],
    "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
    "cgroupns": "private",
    "tmpfs": {"/run": "rw,mode=755", "/run/lock": "rw", "/tmp": "rw,exec,mode=1777"},
    "stop_signal": "SIGRTMIN+3",
    "devices": ["/dev/net/tun:/dev/net/tun:rwm"],
}
#: Docker's read-only paths without /proc/sys: writable, as on an instance. Not a
#: ``containers.run`` argument: set on the host config of the instance.
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sysrq-trigger"]
#: Where the instance's data disk is mounted: the OSDs' BlueStore files (a Docker volume).
DATA_DISK_PATH = "/var/lib/ceph/osd"
#: The container's environment: tells systemd it runs in a container.
ENVIRONMENT = {"container": "docker"}
#: Seconds ``docker stop`` gives systemd to shut down before it kills the container.
STOP_TIMEOUT_S = 120


def host_config(api: Any, memory_mib: int, disk: str, network: str) -> dict[str, Any]:
    """The host config of an instance's container: run options, memory limit, data disk, network.

    Args:
        api: the Docker SDK's low-level client (``client.api``).
        memory_mib: the instance type's memory.
        disk: the volume mounted at :data:`DATA_DISK_PATH`.
        network: the Docker network the container joins.
    """
    config: dict[str, Any] = api.create_host_config(
        binds={disk: {"bind": DATA_DISK_PATH, "mode": "rw"}},
        mem_limit=f"{memory_mib}m", memswap_limit=f"{memory_mib}m",
        cap_add=RUN_OPTIONS["cap_add"], cap_drop=RUN_OPTIONS["cap_drop"], security_opt=RUN_OPTIONS["security_opt"],
        tmpfs=RUN_OPTIONS["tmpfs"], network_mode=network, cgroupns=RUN_OPTIONS["cgroupns"],
        devices=RUN_OPTIONS["devices"],
    )
    config["ReadonlyPaths"] = READONLY_PATHS
    return config


#: The container gets a terminal: its /dev/console, the instance's serial console.
CONSOLE_TTY = True
