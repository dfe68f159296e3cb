"""The sim's instances: the systemd container that plays each moto instance, from launch to removal.

``run_instances`` happens on moto; the container that is that instance starts at the
instance's private IP on the sim's network, with the instance type's memory, the AMI's
root disk (a Docker image) and a data disk (a volume copied from the AMI's snapshot).
How the container differs from a VM, and why, is said once in :mod:`sim.container`.
"""

from __future__ import annotations

import time
from typing import Any

from provision.exceptions import ConfigError, SimError
from provision.settings import Settings
from provision.steps import Log
from provision.target import Target
from provision.target.docker import DockerTarget, docker_client

from . import container, images
from .cloud import LABEL, NETWORK, Cloud, labels
from .state import SimState

#: Seconds a booting instance's systemd may take: ``systemctl is-system-running --wait``
#: returns when every boot unit is done, the boot jobs included; on a new instance with
#: compute (rotations, then the demo server) that is ~2 min, more than the 120 s once allowed.
BOOT_TIMEOUT_S = 600


#: Seconds a container's commit (an AMI's content) may take.
COMMIT_TIMEOUT_S = 1800


def container_name(instance_id: str) -> str:
    """The name of the container that plays ``instance_id``."""
    return f"coa-sim-{instance_id}"


def disk_name(instance_id: str) -> str:
    """The name of the volume that is ``instance_id``'s data disk."""
    return f"coa-sim-disk-{instance_id}"


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


def remove_container(c: Any, wait_s: float = 60) -> bool:
    """Remove a container (forced); one whose removal is already under way (another process) is awaited. True if it was ours to remove."""
    from docker.errors import APIError, NotFound

    try:
        c.remove(force=True)
        return True
    except NotFound:
        return False
    except APIError as e:
        if e.status_code != 409:
            raise
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:  # "removal ... is already in progress"
        try:
            c.reload()
        except NotFound:
            return False
        time.sleep(0.5)
    raise SimError(f"Container {c.name} is still being removed after {wait_s:.0f} s", hint="see `docker ps -a`; run `invoke sim.down` again")


class Instances:
    """The containers that are the sim's instances; the current one is in the cloud's state."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud

    @property
    def state(self) -> SimState:
        """The sim's state (the cloud's: one file for both)."""
        return self.cloud.state

    @property
    def docker(self) -> Any:
        """The Docker client (the cloud's)."""
        return self.cloud.docker

    @property
    def settings(self) -> Settings:
        """The sim's settings (the cloud's)."""
        return self.cloud.settings

    def log(self, message: str) -> None:
        """Log through the cloud's log."""
        self.cloud.log(message)

    # --- the current instance ---------------------------------------------------------
    def target(self) -> DockerTarget:
        """A Target into the current instance's container."""
        if not self.state.container:
            raise SimError("No simulated instance is running", hint="start one with `invoke sim.up`")
        return DockerTarget(self.state.container, client=self.docker)

    def running(self) -> bool:
        """True when the current instance's container runs."""
        from docker.errors import NotFound

        try:
            return self.docker.containers.get(self.state.container).status == "running"
        except NotFound:
            return False

    def wait_systemd(self, timeout: float = BOOT_TIMEOUT_S) -> None:
        """Wait until the current instance's systemd finished booting (its boot jobs included)."""
        wait_for_systemd(self.target(), timeout, self.log)

    # --- launch -------------------------------------------------------------------------
    def launch(self, ami: str, memory_mib: int, wait: bool = True, user_data: str | None = None) -> None:
        """run_instances on moto (with ``user_data``, else the current instance's) and start the container that is it."""
        ec2 = self.cloud.ec2()
        imds = "required" if not self.settings.metadata_allow_v1 else "optional"
        data = self.state.user_data if user_data is None else user_data
        extra = {"UserData": data} if data else {}
        inst = ec2.run_instances(
            ImageId=ami, InstanceType=self.settings.instance_type, MinCount=1, MaxCount=1,
            SubnetId=self.state.subnet_id, KeyName=self.state.key_name,
            MetadataOptions={"HttpTokens": imds, "HttpPutResponseHopLimit": 2, "HttpEndpoint": "enabled"},
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "coa-sim"}, {"Key": LABEL, "Value": "1"}]}],
            **extra,
        )["Instances"][0]
        self.state.user_data = data
        name = self.start_container(inst, memory_mib)
        self.state.instance_id, self.state.container = inst["InstanceId"], name
        self.state.save()
        if wait:
            self.wait_systemd()

    def start_container(self, inst: dict[str, Any], memory_mib: int) -> str:
        """Start the container that plays the moto instance ``inst`` (at its private IP); return its name."""
        iid, ip, ami = inst["InstanceId"], inst["PrivateIpAddress"], inst["ImageId"]
        if ami not in self.state.images:
            raise SimError(f"Instance {iid} runs {ami}, whose disk this sim does not hold", hint="launch from an AMI listed by `invoke sim.status`")
        name = container_name(iid)
        self.log(f"launched {iid} ({inst['InstanceType']}, {ami}) at {ip}; starting container {name}")
        disk = self.new_volume(disk_name(iid), kind="disk", source=self.state.disks.get(ami))
        api = self.docker.api
        config = container.host_config(api, memory_mib, disk, NETWORK)
        net = api.create_networking_config({NETWORK: api.create_endpoint_config(ipv4_address=ip)})
        hostname = inst.get("PrivateDnsName", "").split(".")[0] or name
        api.create_container(
            self.state.images[ami], name=name, hostname=hostname, host_config=config, networking_config=net, labels=labels(kind="instance", **{"instance-id": iid}),
            stop_signal=container.RUN_OPTIONS["stop_signal"], environment=container.ENVIRONMENT, tty=container.CONSOLE_TTY,
        )
        api.start(name)
        return name

    def boot(self, instance_id: str) -> str:
        """Start the container for a moto instance launched by someone else (e.g. the EC2 build); idempotent."""
        from docker.errors import NotFound

        name = container_name(instance_id)
        try:
            if self.docker.containers.get(name).status == "running":
                return name
        except NotFound:
            inst = self.cloud.ec2().describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
            self.start_container(inst, instance_memory_mib(inst["InstanceType"]))
        # A new instance of a built AMI runs its first-boot jobs before systemd reports it booted.
        wait_for_systemd(DockerTarget(name, client=self.docker), BOOT_TIMEOUT_S, self.log)
        return name

    # --- the ways an instance comes back --------------------------------------------------
    def reboot(self, instance_id: str | None = None) -> None:
        """Reboot an instance (the current one by default) on moto and restart its container (same disk, same address)."""
        iid = instance_id or self.state.instance_id
        self.log(f"rebooting {iid} ...")
        self.cloud.ec2().reboot_instances(InstanceIds=[iid])
        c = self.docker.containers.get(container_name(iid))
        c.stop(timeout=container.STOP_TIMEOUT_S)
        c.start()

    def stop(self) -> None:
        """Stop the current instance on moto and its container: the disk and the private IP stay."""
        self.log(f"stopping {self.state.instance_id} ...")
        self.cloud.ec2().stop_instances(InstanceIds=[self.state.instance_id])
        c = self.docker.containers.get(self.state.container)
        c.stop(timeout=container.STOP_TIMEOUT_S)
        self.cloud.ec2().get_waiter("instance_stopped").wait(InstanceIds=[self.state.instance_id], WaiterConfig={"Delay": 1, "MaxAttempts": 60})

    def start(self) -> None:
        """Start the stopped current instance: same instance-id and private IP, a new public IPv4 and name (EC2's rule)."""
        iid = self.state.instance_id
        self.log(f"starting {iid} ...")
        self.cloud.ec2().start_instances(InstanceIds=[iid])
        self.docker.containers.get(self.state.container).start()

    def stopped(self) -> bool:
        """True when the current instance's container exists and is stopped."""
        from docker.errors import NotFound

        try:
            return self.docker.containers.get(self.state.container).status in ("exited", "created")
        except NotFound:
            return False

    def image(self, instance_id: str, ami: str) -> None:
        """Keep a stopped instance's disk as the content of ``ami`` (after moto's create_image)."""
        c = self.docker.containers.get(container_name(instance_id))
        if c.status == "running":
            c.stop(timeout=container.STOP_TIMEOUT_S)
        tag = f"{images.REPO}/ami:{ami}"
        self.log(f"keeping the disk of {instance_id} as {tag} (a builder's whole layer takes minutes on fuse-overlayfs)")
        start = time.monotonic()
        # A commit answers only when the layer is written: the API's usual 120 s is too short
        # for a builder's 2-3 GB layer (seen: ~5 min on fuse-overlayfs, the engine timing out a
        # build whose image was made after all).
        committer = docker_client(timeout=COMMIT_TIMEOUT_S)
        committer.containers.get(c.id).commit(repository=f"{images.REPO}/ami", tag=ami, conf={"Labels": labels(kind="ami", ami=ami)})
        self.log(f"committed {tag} ({time.monotonic() - start:.0f}s)")
        self.state.images[ami] = tag
        self.state.disks[ami] = self.new_volume(f"coa-sim-snap-{ami}", kind="snapshot", source=disk_name(instance_id))
        self.state.save()
        self.log(f"kept the disk of {instance_id} as {ami} ({tag} + volume {self.state.disks[ami]})")

    def relaunch(self, wait: bool = True) -> None:
        """Stop the current instance, image its disk, terminate it and launch a new instance of that image."""
        old_iid, old_name = self.state.instance_id, self.state.container
        c = self.docker.containers.get(old_name)
        self.log(f"stopping {old_iid} and imaging its disk ...")
        c.stop(timeout=container.STOP_TIMEOUT_S)
        ami = self.cloud.ec2().create_image(InstanceId=old_iid, Name=f"coa-sim-relaunch-{old_iid}-{int(time.time())}")["ImageId"]
        self.image(old_iid, ami)
        self.cloud.ec2().terminate_instances(InstanceIds=[old_iid])
        c.remove(force=True)
        self.remove_volume(disk_name(old_iid))
        self.state.instance_id = self.state.container = ""
        self.state.save()
        self.launch(ami, instance_memory_mib(self.settings.instance_type), wait=wait)

    # --- removal --------------------------------------------------------------------------
    def reconcile(self) -> list[str]:
        """Remove the containers (and disks) of instances moto says are terminated or gone."""
        removed = []
        known = {i["InstanceId"]: i["State"]["Name"] for r in self.cloud.ec2().describe_instances()["Reservations"] for i in r["Instances"]}
        for c in self.docker.containers.list(all=True, filters={"label": f"{LABEL}.kind=instance"}):
            iid = c.labels.get(f"{LABEL}.instance-id", "")
            if known.get(iid, "terminated") in ("terminated", "shutting-down"):
                remove_container(c)
                self.remove_volume(disk_name(iid))
                removed.append(iid)
        return removed

    def remove_all(self) -> None:
        """Remove every instance container and data disk; there is no current instance after."""
        for c in self.docker.containers.list(all=True, filters={"label": f"{LABEL}.kind=instance"}):
            remove_container(c)
        for v in self.docker.volumes.list(filters={"label": f"{LABEL}.kind=disk"}):
            v.remove(force=True)
        self.state.instance_id = self.state.container = ""

    def remove_containers(self) -> list[str]:
        """Remove every container the sim made (instances, volume copiers); what was removed."""
        removed = []
        for c in self.docker.containers.list(all=True, filters={"label": LABEL}):
            if remove_container(c):
                removed.append(f"container {c.name}")
        return removed

    # --- disks ----------------------------------------------------------------------------
    def new_volume(self, name: str, kind: str, source: str | None = None) -> str:
        """Create a Docker volume, as a sparse copy of ``source`` when given (an EBS volume from a snapshot)."""
        self.remove_volume(name)
        self.docker.volumes.create(name, labels=labels(kind=kind))
        if source:
            start = time.monotonic()
            self.docker.containers.run(
                self.state.images[next(iter(self.state.images))], ["cp", "-a", "--sparse=always", "/src/.", "/dst/"],
                volumes={source: {"bind": "/src", "mode": "ro"}, name: {"bind": "/dst", "mode": "rw"}},
                remove=True, labels=labels(kind="copier"), entrypoint=[],
            )
            self.log(f"copied volume {source} -> {name} ({time.monotonic() - start:.1f}s)")
        return name

    def remove_volume(self, name: str) -> None:
        """Remove a Docker volume; one already gone is fine."""
        from docker.errors import NotFound

        try:
            self.docker.volumes.get(name).remove(force=True)
        except NotFound:
            pass
