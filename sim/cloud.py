"""The sim's cloud: moto as the EC2 API, its network, VPC, key pair, and the AMIs this sim holds.

A moto server (in the sim daemon, ``python -m sim.daemon``) is the EC2 API, and the same
process serves the instance metadata. The sim's Docker network is the VPC subnet: a
container's address on it is its instance's private IP, and 169.254.169.254 is put on
the network's bridge (see :mod:`sim.container`). Every AMI this sim can launch is kept
as a Docker image (its root disk) and a volume (its data-disk snapshot), recorded in
:class:`~sim.state.SimState`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from provision.exceptions import SimError
from provision.profiles import get_profile
from provision.settings import Settings
from provision.steps import Log
from provision.target.docker import docker_client

from . import amis, clouds, images
from .aws import ec2_client
from .state import ROOT, SimState, state_dir

LABEL = images.LABEL
NETWORK = "coa-sim-net"
BRIDGE = "coa-sim0"
SUBNET = "10.77.0.0/24"
GATEWAY = "10.77.0.1"
IMDS_ADDRESS = "169.254.169.254"
#: Seconds the sim daemon has to answer after it is started.
DAEMON_START_S = 30
#: Seconds the sim daemon has to end after SIGTERM (its last write of the AMI registrations).
DAEMON_STOP_S = 15


def labels(**extra: str) -> dict[str, str]:
    """The labels of a Docker object the sim makes (``down`` finds them by :data:`LABEL`)."""
    return {LABEL: "1", **{f"{LABEL}.{k}": v for k, v in extra.items()}}


@dataclass
class Cloud:
    """The sim's EC2 side, driven from the host: daemon, network, VPC, key pair, AMI registry.

    It holds the sim's state (:attr:`state`, saved in the state directory) and the Docker
    client, which the instance side (:class:`sim.instance.Instances`) shares.
    """

    settings: Settings
    log: Log = print

    def __post_init__(self) -> None:
        self.state = SimState.load()
        self._docker: Any = None

    def reload(self) -> None:
        """Read the saved state again (another process may have changed it)."""
        self.state = SimState.load()

    @property
    def docker(self) -> Any:
        """Docker SDK client (ConnectError with a hint when no engine answers)."""
        if self._docker is None:
            self._docker = docker_client()
        return self._docker

    def ec2(self) -> Any:
        """boto3 EC2 client on the sim's moto server."""
        return ec2_client(self.state.endpoint, self.state.region)

    # --- the network ------------------------------------------------------------------
    def ensure_network(self) -> None:
        """The sim's Docker network and bridge, with the metadata address on the bridge."""
        from docker.errors import NotFound

        try:
            self.docker.networks.get(NETWORK)
        except NotFound:
            import docker

            ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=SUBNET, gateway=GATEWAY)])
            self.docker.networks.create(
                NETWORK, driver="bridge", ipam=ipam, labels=labels(kind="network"),
                options={"com.docker.network.bridge.name": BRIDGE},
            )
            self.log(f"created Docker network {NETWORK} ({SUBNET}, bridge {BRIDGE})")
        # The metadata address lives on the sim's bridge; containers reach it via their gateway.
        have = subprocess.run(["ip", "-4", "addr", "show", "dev", BRIDGE], capture_output=True, text=True).stdout
        if f"{IMDS_ADDRESS}/32" not in have:
            r = subprocess.run(["ip", "addr", "add", f"{IMDS_ADDRESS}/32", "dev", BRIDGE], capture_output=True, text=True)
            if r.returncode != 0:
                raise SimError(f"Cannot put {IMDS_ADDRESS} on {BRIDGE}: {r.stderr.strip()}", hint="the sim needs root to add the metadata address")

    # --- the daemon (moto and the metadata service) -------------------------------------
    def daemon_alive(self) -> bool:
        """True when the recorded sim daemon runs and its moto answers."""
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

    def ensure_daemon(self) -> None:
        """Start the sim daemon unless it runs (a new one starts with an empty EC2)."""
        if self.daemon_alive():
            return
        if self.state.endpoint:  # there was a daemon: what it held (VPC, key pair, instances) went with it, its AMIs did not
            if self.state.instance_id:
                self.log("the sim daemon (moto) is gone: its instances are lost (its AMIs are kept); starting afresh")
            self.state = SimState(images=self.state.images, disks=self.state.disks, profile=self.state.profile)
        # The new daemon starts with the registrations of the AMIs whose content this sim still holds.
        restored = amis.keep_only(amis.registry_path(), self.state.images)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        d = state_dir()
        d.mkdir(parents=True, exist_ok=True)
        with open(d / "daemon.log", "ab") as logf:  # the daemon keeps its own copy of the descriptor
            proc = subprocess.Popen(
                [sys.executable, "-m", "sim.daemon", "--port", str(port), "--region", self.settings.region, "--imds-host", IMDS_ADDRESS,
                 "--amis", str(amis.registry_path())],
                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(ROOT), start_new_session=True,
            )
        self.state.daemon_pid = proc.pid
        self.state.endpoint = f"http://127.0.0.1:{port}"
        self.state.region = self.settings.region
        self._await_daemon(proc)
        self.state.save()
        self.log(f"sim daemon started (pid {proc.pid}): moto at {self.state.endpoint}, metadata at http://{IMDS_ADDRESS}/"
                 + (f", {len(restored)} AMI(s) kept from before" if restored else ""))

    def _await_daemon(self, proc: subprocess.Popen[bytes]) -> None:
        """Wait until the new daemon's moto answers; SimError when it exits or stays silent."""
        log_path = state_dir() / "daemon.log"
        deadline = time.monotonic() + DAEMON_START_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SimError("The sim daemon exited at start", hint=f"see {log_path}")
            try:
                self.ec2().describe_regions()
                return
            except Exception:
                time.sleep(0.3)
        raise SimError(f"The sim daemon did not answer within {DAEMON_START_S} s", hint=f"see {log_path}")

    def stop_daemon(self) -> list[str]:
        """Stop the recorded sim daemon (its process group); what was stopped."""
        if not self.state.daemon_pid:
            return []
        try:
            os.killpg(self.state.daemon_pid, signal.SIGTERM)
        except OSError:
            return []
        # It writes the AMI registrations a last time as it ends: wait, so nothing writes after us.
        deadline = time.monotonic() + DAEMON_STOP_S
        while time.monotonic() < deadline:
            try:
                os.kill(self.state.daemon_pid, 0)
            except OSError:
                break
            time.sleep(0.2)
        return [f"sim daemon {self.state.daemon_pid}"]

    # --- EC2: VPC, subnet, key pair ---------------------------------------------------
    def ensure_ec2_plumbing(self) -> None:
        """The VPC and subnet instances launch into, and the key pair (its private key 0600)."""
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

    def ensure(self) -> None:
        """Network, daemon, VPC and key pair: what an instance needs before it is launched."""
        self.ensure_network()
        self.ensure_daemon()
        self.ensure_ec2_plumbing()

    # --- the AMIs this sim holds --------------------------------------------------------
    def require_ami(self, ami: str) -> None:
        """Refuse an AMI whose content this sim does not hold."""
        if ami not in self.state.images:
            raise SimError(f"AMI {ami} was not built in this sim", hint="build one with `invoke build.ami --sim`, or list them with `invoke sim.status`")

    def choose_profile(self, profile: str | None) -> str:
        """``profile``, else the one this sim ran, else the default (ubuntu-24.04 if it can be pulled)."""
        return profile or self.state.profile or images.default_profile(self.docker, self.log)

    def source_ami(self, profile_name: str) -> str:
        """The AMI of ``profile_name``'s OS image (the distribution's cloud image), registered once."""
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

    # --- keeping AMIs ------------------------------------------------------------------
    def kept_amis(self) -> set[str]:
        """The AMIs ``sim.down`` keeps: those a build made and the source images (not the relaunch images).

        Read from the daemon's registry file, so call it once the daemon has stopped.
        """
        records = {r["ami_id"]: r for r in amis.read(amis.registry_path())}
        sources = {a for a, tag in self.state.images.items() if tag.startswith(f"{images.REPO}/os:")}
        built = {a for a in self.state.images if a in records and amis.built_by_a_build(records[a])}
        return (sources | built) & set(records)

    def forget_ami(self, ami: str) -> list[str]:
        """Remove what the sim holds as ``ami``'s content (its image tag, its snapshot volume); what was removed."""
        from docker.errors import NotFound

        removed = []
        tag, disk = self.state.images.pop(ami, None), self.state.disks.pop(ami, None)
        if tag and not tag.startswith(f"{images.REPO}/os:"):
            try:
                self.docker.images.remove(tag, force=True)
                removed.append(f"image {tag}")
            except NotFound:
                pass
        if disk:
            try:
                self.docker.volumes.get(disk).remove(force=True)
                removed.append(f"volume {disk}")
            except NotFound:
                pass
        self.state.save()
        return removed

    # --- down ---------------------------------------------------------------------------
    def down(self, all_images: bool = False, keep_amis: bool = True) -> list[str]:
        """Stop the daemon; remove the sim's volumes, networks, images and state files (after its containers).

        Built AMIs stay, as on EC2 (their content, snapshot volume and registration), unless
        ``all_images`` or not ``keep_amis``; the cached base and OS images stay unless ``all_images``.
        """
        removed = self.stop_daemon()
        keep = self.kept_amis() if keep_amis and not all_images else set()
        keep_volumes = {self.state.disks[a] for a in keep if a in self.state.disks}
        for v in self.docker.volumes.list(filters={"label": LABEL}):
            if v.name in keep_volumes:
                continue
            v.remove(force=True)
            removed.append(f"volume {v.name}")
        for n in self.docker.networks.list(filters={"label": LABEL}):
            n.remove()
            removed.append(f"network {n.name}")
        keep_tags = {self.state.images[a] for a in keep}
        removed += images.remove_images(self.docker, all_images, self.log, keep=keep_tags)
        amis.keep_only(amis.registry_path(), keep)
        if clouds.set_hosts_block(None, []):
            removed.append(f"the sim's block in {clouds.HOSTS_FILE}")
        d = state_dir()
        for f in ("state.json", f"{self.state.key_name or 'coa-sim'}.pem", "moto-amis.load.json"):
            if (d / f).exists():
                (d / f).unlink()
        self.state = SimState(images={a: self.state.images[a] for a in keep}, disks={a: self.state.disks[a] for a in keep if a in self.state.disks})
        if keep:
            self.state.save()
        return removed
