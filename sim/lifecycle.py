"""The simulated instance's lifecycle: up, status, reboot, relaunch, down.

A moto server (in the sim daemon) is the EC2 API. ``up`` calls ``run_instances`` on it
and starts a systemd container as that instance: the container's address on the sim's
Docker network is the instance's private IP, its memory limit the instance type's, and
169.254.169.254 answers it with the instance's own metadata.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

from provision import host as provision_host
from provision.ec2.plan import validate_ami_id
from provision.exceptions import ConfigError, SimError
from provision.profiles import get_profile, record_proven
from provision.ready import Check, wait_ready
from provision.settings import Settings
from provision.target import Target
from provision.target.docker import DockerTarget, docker_client

from . import images
from .daemon import ec2_client
from .state import ROOT, SimState, state_dir

LABEL = images.LABEL
NETWORK = "coa-sim-net"
BRIDGE = "coa-sim0"
SUBNET = "10.77.0.0/24"
GATEWAY = "10.77.0.1"
IMDS_ADDRESS = "169.254.169.254"
#: Where the instance's data disk is mounted: the OSDs' BlueStore files. ``docker commit``
#: writes sparse files out in full (a 10 GiB OSD file with 8 MiB of data became a 10.9 GB
#: layer in 2 minutes), so this part of the disk is a Docker volume, copied sparsely when
#: an image is made, as EBS snapshots the volumes of an AMI's block-device mapping.
DATA_DISK_PATH = "/var/lib/ceph/osd"

Log = Callable[[str], None]

#: How a container must run to host systemd on this engine. ``privileged`` is refused by
#: engines whose capability bounding set lacks CAP_SYS_RESOURCE (as here), so every other
#: capability is granted instead; seccomp and AppArmor are unconfined as for privileged.
RUN_OPTIONS: dict[str, Any] = {
    "cap_add": ["ALL"],
    "cap_drop": ["SYS_RESOURCE"],
    "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
    "cgroupns": "private",
    "tmpfs": {"/run": "rw,mode=755", "/run/lock": "rw", "/tmp": "rw,exec,mode=1777"},
    "stop_signal": "SIGRTMIN+3",
    # An EC2 instance has /dev/net/tun (libvirt plugs each guest's NIC in as a tap device);
    # a container only has it when given. /dev/kvm is not given: KVM is unusable nested here,
    # so Nova runs its guests under TCG (openstack-notes.md).
    "devices": ["/dev/net/tun:/dev/net/tun:rwm"],
}
#: Docker's read-only paths without /proc/sys: writable, as on an instance (os-vif sets
#: per-bridge sysctls when Nova plugs a guest's NIC; they belong to the container's network
#: namespace). Not a ``containers.run`` argument: set on the host config of the instance.
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sysrq-trigger"]


@dataclass
class Sim:
    """The simulation, driven from the host."""

    settings: Settings
    log: Log = print

    def __post_init__(self) -> None:
        self.state = SimState.load()
        self._docker: Any = None

    # --- plumbing -------------------------------------------------------------------
    @property
    def docker(self) -> Any:
        """Docker SDK client (ConnectError with a hint when no engine answers)."""
        if self._docker is None:
            self._docker = docker_client()
        return self._docker

    def ec2(self) -> Any:
        """boto3 EC2 client on the sim's moto server."""
        return ec2_client(self.state.endpoint, self.state.region)

    def target(self) -> DockerTarget:
        """A Target into the current instance's container."""
        if not self.state.container:
            raise SimError("No simulated instance is running", hint="start one with `invoke sim.up`")
        return DockerTarget(self.state.container, client=self.docker)

    def _labels(self, **extra: str) -> dict[str, str]:
        return {LABEL: "1", **{f"{LABEL}.{k}": v for k, v in extra.items()}}

    def _ensure_network(self) -> None:
        from docker.errors import NotFound

        try:
            self.docker.networks.get(NETWORK)
        except NotFound:
            import docker

            ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=SUBNET, gateway=GATEWAY)])
            self.docker.networks.create(
                NETWORK, driver="bridge", ipam=ipam, labels=self._labels(kind="network"),
                options={"com.docker.network.bridge.name": BRIDGE},
            )
            self.log(f"created Docker network {NETWORK} ({SUBNET}, bridge {BRIDGE})")
        # The metadata address lives on the sim's bridge; containers reach it via their gateway.
        have = subprocess.run(["ip", "-4", "addr", "show", "dev", BRIDGE], capture_output=True, text=True).stdout
        if f"{IMDS_ADDRESS}/32" not in have:
            r = subprocess.run(["ip", "addr", "add", f"{IMDS_ADDRESS}/32", "dev", BRIDGE], capture_output=True, text=True)
            if r.returncode != 0:
                raise SimError(f"Cannot put {IMDS_ADDRESS} on {BRIDGE}: {r.stderr.strip()}", hint="the sim needs root to add the metadata address")

    def _daemon_alive(self) -> bool:
        if not self.state.daemon_pid:
            return False
        try:
            os.kill(self.state.daemon_pid, 0)
        except OSError:
            return False
        try:
            self.ec2().describe_regions()
            return True
        except Exception:
            return False

    def _ensure_daemon(self) -> None:
        if self._daemon_alive():
            return
        if self.state.instance_id:
            self.log("the sim daemon (moto) is gone: its EC2 state is lost; starting afresh")
            self.state = SimState()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        d = state_dir()
        d.mkdir(parents=True, exist_ok=True)
        with open(d / "daemon.log", "ab") as logf:  # the daemon keeps its own copy of the descriptor
            proc = subprocess.Popen(
                [sys.executable, "-m", "sim.daemon", "--port", str(port), "--region", self.settings.region, "--imds-host", IMDS_ADDRESS],
                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(ROOT), start_new_session=True,
            )
        self.state.daemon_pid = proc.pid
        self.state.endpoint = f"http://127.0.0.1:{port}"
        self.state.region = self.settings.region
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SimError("The sim daemon exited at start", hint=f"see {d / 'daemon.log'}")
            try:
                self.ec2().describe_regions()
                break
            except Exception:
                time.sleep(0.3)
        else:
            raise SimError("The sim daemon did not answer within 30 s", hint=f"see {d / 'daemon.log'}")
        self.state.save()
        self.log(f"sim daemon started (pid {proc.pid}): moto at {self.state.endpoint}, metadata at http://{IMDS_ADDRESS}/")

    def _ensure_ec2_plumbing(self) -> None:
        ec2 = self.ec2()
        if not self.state.subnet_id:
            vpc = ec2.create_vpc(CidrBlock=SUBNET, TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": "coa-sim"}]}])["Vpc"]["VpcId"]
            az = f"{self.settings.region}a"
            subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=SUBNET, AvailabilityZone=az)["Subnet"]["SubnetId"]
            ec2.modify_subnet_attribute(SubnetId=subnet, MapPublicIpOnLaunch={"Value": True})
            self.state.vpc_id, self.state.subnet_id = vpc, subnet
        if not self.state.key_name or not self.state.key_path.exists():
            self.state.key_name = "coa-sim"
            ec2.delete_key_pair(KeyName=self.state.key_name)
            key = ec2.create_key_pair(KeyName=self.state.key_name, KeyType="ed25519")["KeyMaterial"]
            path = self.state.key_path
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(key)
        self.state.save()

    def _check_instance_type(self) -> int:
        """Validate the configured instance type (before anything is made); return its memory in MiB."""
        return instance_memory_mib(self.settings.instance_type)

    def _require_ami(self, ami: str) -> None:
        """Refuse an AMI whose content this sim does not hold."""
        if ami not in self.state.images:
            raise SimError(f"AMI {ami} was not built in this sim", hint="build one with `invoke build.ami --sim`, or list them with `invoke sim.status`")

    def _source_ami(self, profile_name: str) -> str:
        profile = get_profile(profile_name)
        tag = images.os_image(self.docker, profile, self.log)
        for ami, image in self.state.images.items():
            if image == tag:
                return ami
        ami = self.ec2().register_image(
            Name=f"{profile.name}-sim-source-{tag.rsplit('-', 1)[-1]}",
            Description=f"sim source image for {profile.name} ({tag})",
            Architecture="x86_64", RootDeviceName="/dev/xvda", VirtualizationType="hvm", EnaSupport=True,
            BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 30, "VolumeType": "gp3"}}],
        )["ImageId"]
        self.state.images[ami] = tag
        self.state.save()
        return ami

    # --- instances ------------------------------------------------------------------
    def _launch(self, ami: str, memory_mib: int, wait: bool = True) -> None:
        """run_instances on moto and start the container that is that instance."""
        ec2 = self.ec2()
        imds = "required" if not self.settings.metadata_allow_v1 else "optional"
        inst = ec2.run_instances(
            ImageId=ami, InstanceType=self.settings.instance_type, MinCount=1, MaxCount=1,
            SubnetId=self.state.subnet_id, KeyName=self.state.key_name,
            MetadataOptions={"HttpTokens": imds, "HttpPutResponseHopLimit": 2, "HttpEndpoint": "enabled"},
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "coa-sim"}, {"Key": LABEL, "Value": "1"}]}],
        )["Instances"][0]
        name = self._start_container(inst, memory_mib)
        self.state.instance_id, self.state.container = inst["InstanceId"], name
        self.state.save()
        if wait:
            self._wait_systemd()

    def _start_container(self, inst: dict[str, Any], memory_mib: int) -> str:
        """Start the container that plays the moto instance ``inst`` (at its private IP); return its name."""
        iid, ip, ami = inst["InstanceId"], inst["PrivateIpAddress"], inst["ImageId"]
        if ami not in self.state.images:
            raise SimError(f"Instance {iid} runs {ami}, whose disk this sim does not hold", hint="launch from an AMI listed by `invoke sim.status`")
        name = f"coa-sim-{iid}"
        self.log(f"launched {iid} ({inst['InstanceType']}, {ami}) at {ip}; starting container {name}")
        disk = self._new_volume(f"coa-sim-disk-{iid}", kind="disk", source=self.state.disks.get(ami))
        api = self.docker.api
        host_config = api.create_host_config(
            binds={disk: {"bind": DATA_DISK_PATH, "mode": "rw"}},
            mem_limit=f"{memory_mib}m", memswap_limit=f"{memory_mib}m",
            cap_add=RUN_OPTIONS["cap_add"], cap_drop=RUN_OPTIONS["cap_drop"], security_opt=RUN_OPTIONS["security_opt"],
            tmpfs=RUN_OPTIONS["tmpfs"], network_mode=NETWORK, cgroupns=RUN_OPTIONS["cgroupns"],
            devices=RUN_OPTIONS["devices"],
        )
        host_config["ReadonlyPaths"] = READONLY_PATHS
        net = api.create_networking_config({NETWORK: api.create_endpoint_config(ipv4_address=ip)})
        hostname = inst.get("PrivateDnsName", "").split(".")[0] or name
        api.create_container(
            self.state.images[ami], name=name, hostname=hostname, host_config=host_config, networking_config=net,
            labels=self._labels(kind="instance", **{"instance-id": iid}), stop_signal=RUN_OPTIONS["stop_signal"],
            environment={"container": "docker"},
        )
        api.start(name)
        return name

    # --- what build.ami --sim needs: EC2 calls from elsewhere become containers ------
    def ensure_infra(self, profile: str | None = None) -> str:
        """Network, daemon, VPC and the source AMI of ``profile`` (no instance); return that AMI's id."""
        self.docker
        self._ensure_network()
        self._ensure_daemon()
        self._ensure_ec2_plumbing()
        profile = profile or self.state.profile or default_profile(self.docker, self.log)
        if not self.state.profile:
            self.state.profile = profile
            self.state.save()
        return self._source_ami(profile)

    def boot_instance(self, instance_id: str) -> str:
        """Start the container for a moto instance launched by someone else (e.g. the EC2 build); idempotent."""
        name = f"coa-sim-{instance_id}"
        from docker.errors import NotFound

        try:
            if self.docker.containers.get(name).status == "running":
                return name
        except NotFound:
            inst = self.ec2().describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
            self._start_container(inst, instance_memory_mib(inst["InstanceType"]))
        wait_for_systemd(DockerTarget(name, client=self.docker), 120, self.log)
        return name

    def image_instance(self, instance_id: str, ami: str) -> None:
        """Keep a stopped instance's disk as the content of ``ami`` (after moto's create_image)."""
        name = f"coa-sim-{instance_id}"
        c = self.docker.containers.get(name)
        if c.status == "running":
            c.stop(timeout=120)
        tag = f"{images.REPO}/ami:{ami}"
        c.commit(repository=f"{images.REPO}/ami", tag=ami, conf={"Labels": self._labels(kind="ami", ami=ami)})
        self.state.images[ami] = tag
        self.state.disks[ami] = self._new_volume(f"coa-sim-snap-{ami}", kind="snapshot", source=f"coa-sim-disk-{instance_id}")
        self.state.save()
        self.log(f"kept the disk of {instance_id} as {ami} ({tag} + volume {self.state.disks[ami]})")

    def reconcile(self) -> list[str]:
        """Remove the containers (and disks) of instances moto says are terminated or gone."""
        removed = []
        known = {i["InstanceId"]: i["State"]["Name"] for r in self.ec2().describe_instances()["Reservations"] for i in r["Instances"]}
        for c in self.docker.containers.list(all=True, filters={"label": f"{LABEL}.kind=instance"}):
            iid = c.labels.get(f"{LABEL}.instance-id", "")
            if known.get(iid, "terminated") in ("terminated", "shutting-down"):
                c.remove(force=True)
                self._remove_volume(f"coa-sim-disk-{iid}")
                removed.append(iid)
        return removed

    def _wait_systemd(self, timeout: float = 600) -> None:
        # `systemctl is-system-running --wait` returns when every boot unit is done, the boot
        # jobs included: on a new instance with compute (rotations, then the demo server) that
        # is ~2 min, more than the 120 s once allowed here.
        wait_for_systemd(self.target(), timeout, self.log)

    def _wait_ready(self, timeout: float = 900) -> list[Check]:
        return wait_ready(self.target(), self.settings, timeout=timeout, log=self.log)

    def up(self, ami: str | None = None, profile: str | None = None) -> dict[str, Any]:
        """Launch (or find) the simulated instance, provision it, wait until ready."""
        self.state = SimState.load()
        self._check_instance_type()
        self.docker  # fail early without an engine
        if not ami and self.state.container and self._container_running() and self._daemon_alive():
            self.log(f"instance {self.state.instance_id} is already up ({self.state.container})")
        else:
            self.launch_unprovisioned(ami, profile)
        if not self.state.provisioned:
            provision_host.provision(self.target(), self.settings, self.state.profile, self.log)
        return self.mark_provisioned()

    def launch_unprovisioned(self, ami: str | None = None, profile: str | None = None) -> None:
        """Replace any instance with a new one: from ``ami`` (a built AMI), else from the profile's source image."""
        if ami is not None:
            validate_ami_id(ami)
        memory = self._check_instance_type()
        if ami:
            self._require_ami(ami)  # before anything is made
        if self.state.instance_id and self._daemon_alive():
            self.ec2().terminate_instances(InstanceIds=[self.state.instance_id])
        self._remove_instances()
        self._ensure_network()
        self._ensure_daemon()
        self._ensure_ec2_plumbing()
        if ami:
            self._require_ami(ami)  # again: a restarted daemon forgets every AMI
            source = ami
        else:
            profile = profile or self.state.profile or default_profile(self.docker, self.log)
            self.state.profile = profile
            source = self._source_ami(profile)
        self._launch(source, memory)
        self.state.provisioned = bool(ami)  # an instance of a built AMI carries the content already
        self.state.save()

    def mark_provisioned(self) -> dict[str, Any]:
        """Record the instance as provisioned, wait until ready, record the profile as proven."""
        self.state.provisioned = True
        self.state.save()
        self._wait_ready()
        if self.state.profile:
            record_proven(self.state.profile)
        return self.status()

    def _container_running(self) -> bool:
        from docker.errors import NotFound

        try:
            return self.docker.containers.get(self.state.container).status == "running"
        except NotFound:
            return False

    def reboot(self, wait: bool = True) -> dict[str, Any]:
        """Restart the same instance: same instance-id, same IP; wait until ready (unless ``wait`` is False)."""
        self.state = SimState.load()
        self._require_running()
        self.log(f"rebooting {self.state.instance_id} ...")
        self.ec2().reboot_instances(InstanceIds=[self.state.instance_id])
        c = self.docker.containers.get(self.state.container)
        c.stop(timeout=120)
        c.start()
        if not wait:
            return {"instance_id": self.state.instance_id, "container": self.state.container}
        self._wait_systemd()
        self._wait_ready()
        return self.status()

    def relaunch(self, wait: bool = True) -> dict[str, Any]:
        """Launch a new instance from this instance's disk: new instance-id, new IP; wait until ready (unless ``wait`` is False)."""
        self.state = SimState.load()
        self._require_running()
        old_iid, old_name = self.state.instance_id, self.state.container
        c = self.docker.containers.get(old_name)
        self.log(f"stopping {old_iid} and imaging its disk ...")
        c.stop(timeout=120)
        ami = self.ec2().create_image(InstanceId=old_iid, Name=f"coa-sim-relaunch-{old_iid}-{int(time.time())}")["ImageId"]
        self.image_instance(old_iid, ami)
        self.ec2().terminate_instances(InstanceIds=[old_iid])
        c.remove(force=True)
        self._remove_volume(f"coa-sim-disk-{old_iid}")
        self.state.instance_id = self.state.container = ""
        self.state.save()
        self._launch(ami, self._check_instance_type(), wait=wait)
        if not wait:
            return {"instance_id": self.state.instance_id, "container": self.state.container}
        self._wait_ready()
        return self.status()

    def _require_running(self) -> None:
        if not self.state.container or not self._container_running():
            raise SimError("No simulated instance is running", hint="start one with `invoke sim.up`")
        if not self._daemon_alive():
            raise SimError("The sim daemon (moto) is not running: its EC2 state is lost", hint="run `invoke sim.down` then `invoke sim.up`")

    def status(self) -> dict[str, Any]:
        """Instance-id, container, addresses, AMI, EC2 endpoint and readiness of each check."""
        self.state = SimState.load()
        s: dict[str, Any] = {
            "instance_id": self.state.instance_id or None, "container": self.state.container or None,
            "private_ip": None, "public_ip": None, "public_hostname": None, "ami_id": None,
            "instance_type": None, "profile": self.state.profile or None,
            "ec2_endpoint": self.state.endpoint or None, "daemon_running": self._daemon_alive(),
            "ready": False, "checks": {}, "amis": sorted(self.state.images),
        }
        if s["daemon_running"] and self.state.instance_id:
            res = self.ec2().describe_instances(InstanceIds=[self.state.instance_id])
            inst = res["Reservations"][0]["Instances"][0]
            s.update(private_ip=inst.get("PrivateIpAddress"), public_ip=inst.get("PublicIpAddress"),
                     public_hostname=inst.get("PublicDnsName"), ami_id=inst.get("ImageId"), instance_type=inst.get("InstanceType"),
                     state=inst["State"]["Name"])
        if self.state.container and self._container_running():
            from provision.ready import check_all

            checks = check_all(self.target(), self.settings)
            s["checks"] = {c.name: {"ok": c.ok, "detail": c.detail} for c in checks}
            s["ready"] = all(c.ok for c in checks)
        return s

    def _remove_instances(self) -> None:
        for c in self.docker.containers.list(all=True, filters={"label": f"{LABEL}.kind=instance"}):
            c.remove(force=True)
        for v in self.docker.volumes.list(filters={"label": f"{LABEL}.kind=disk"}):
            v.remove(force=True)
        self.state.instance_id = self.state.container = ""

    def _new_volume(self, name: str, kind: str, source: str | None = None) -> str:
        """Create a Docker volume, as a sparse copy of ``source`` when given (an EBS volume from a snapshot)."""
        self._remove_volume(name)
        self.docker.volumes.create(name, labels=self._labels(kind=kind))
        if source:
            start = time.monotonic()
            self.docker.containers.run(
                self.state.images[next(iter(self.state.images))], ["cp", "-a", "--sparse=always", "/src/.", "/dst/"],
                volumes={source: {"bind": "/src", "mode": "ro"}, name: {"bind": "/dst", "mode": "rw"}},
                remove=True, labels=self._labels(kind="copier"), entrypoint=[],
            )
            self.log(f"copied volume {source} -> {name} ({time.monotonic() - start:.1f}s)")
        return name

    def _remove_volume(self, name: str) -> None:
        from docker.errors import NotFound

        try:
            self.docker.volumes.get(name).remove(force=True)
        except NotFound:
            pass

    def down(self, all_images: bool = False) -> list[str]:
        """Remove everything the sim made; cached base/OS images stay unless ``all_images``."""
        self.state = SimState.load()
        removed: list[str] = []
        for c in self.docker.containers.list(all=True, filters={"label": LABEL}):
            c.remove(force=True)
            removed.append(f"container {c.name}")
        if self.state.daemon_pid:
            try:
                os.killpg(self.state.daemon_pid, signal.SIGTERM)
                removed.append(f"sim daemon {self.state.daemon_pid}")
            except OSError:
                pass
        for v in self.docker.volumes.list(filters={"label": LABEL}):
            v.remove(force=True)
            removed.append(f"volume {v.name}")
        for n in self.docker.networks.list(filters={"label": LABEL}):
            n.remove()
            removed.append(f"network {n.name}")
        ours = [(t, t.split("/", 1)[1].split(":", 1)[0]) for img in self.docker.images.list() for t in img.tags
                if t.startswith(f"{images.REPO}/")]
        # AMIs (children) before the cached base and OS images they are built on.
        for tag, kind in sorted(ours, key=lambda tk: tk[1] in images.CACHED_KINDS):
            if kind in images.CACHED_KINDS and not all_images:
                continue
            try:
                self.docker.images.remove(tag, force=True)
                removed.append(f"image {tag}")
            except Exception as e:  # still used by a container of another tool
                self.log(f"left image {tag}: {e}")
        d = state_dir()
        for f in ("state.json", f"{self.state.key_name or 'coa-sim'}.pem"):
            if (d / f).exists():
                (d / f).unlink()
        self.state = SimState()
        return removed


def instance_memory_mib(instance_type: str) -> int:
    """Memory of an EC2 instance type, from the catalogue moto serves (checked before anything is made).

    Raises:
        ConfigError: EC2 does not offer that type.
    """
    from moto.ec2.models.instance_types import INSTANCE_TYPES

    if instance_type not in INSTANCE_TYPES:
        raise ConfigError(f"EC2 does not offer instance type {instance_type!r}", hint="use e.g. m1.xlarge (the default)")
    return int(INSTANCE_TYPES[instance_type]["MemoryInfo"]["SizeInMiB"])


def wait_for_systemd(target: Target, timeout: float = 120, log: Log = print) -> str:
    """Wait until systemd in the container finished booting; return its state (running/degraded)."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        r = target.run(["timeout", "30", "systemctl", "is-system-running", "--wait"], check=False)
        state = r.stdout.strip()
        if state in ("running", "degraded"):
            break
        time.sleep(0.5)  # systemd's bus is not up yet
    else:
        raise SimError(f"systemd in {target.name} did not finish booting within {timeout:.0f}s: {state}", hint="see `invoke sim.logs`")
    if state == "degraded":
        failed = target.run("systemctl --failed --no-legend --plain", check=False).stdout.strip()
        log(f"warning: systemd is degraded:\n{failed}")
    return state


def default_profile(client: Any, log: Log) -> str:
    """ubuntu-24.04 where ``ubuntu:24.04`` can be pulled, else debian-12 (built with debootstrap)."""
    if images.try_pull(client, "ubuntu:24.04", log):
        return "ubuntu-24.04"
    log("falling back to Debian 12 built with debootstrap (profile debian-12)")
    return "debian-12"

