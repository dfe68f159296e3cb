"""The simulated instance's lifecycle, as tasks and tests drive it: up, status, reboot, relaunch, down.

A moto server (in the sim daemon) is the EC2 API. ``up`` calls ``run_instances`` on it
and starts a systemd container as that instance: the container's address on the sim's
Docker network is the instance's private IP, its memory limit the instance type's, and
169.254.169.254 answers it with the instance's own metadata.

:class:`Sim` composes the two halves: :class:`sim.cloud.Cloud` (the moto daemon, the
network, VPC, key pair and the AMIs this sim holds) and :class:`sim.instance.Instances`
(the containers that are the instances).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision import host as provision_host
from provision.ec2.cleanup import deregister as deregister_image
from provision.ec2.plan import validate_ami_id
from provision.ec2.signals import SignalGuard
from provision.exceptions import SimError
from provision.openstack.dashboard import admin_password_on
from provision.openstack.identity import OPENRC_PATH, parse_openrc
from provision.profiles import get_profile, record_proven
from provision.ready import Check, check_all, wait_ready
from provision.settings import Settings
from provision.steps import Log
from provision.target.docker import DockerTarget
from provision.tls import cert_files

from . import amis, clouds
from .cloud import LABEL, Cloud
from .instance import Instances, container_name, instance_memory_mib
from .state import SimState

#: What to run when the sim daemon died under an instance (moto cannot be given its instance back).
RECOVER_HINT = "run `invoke sim.down` then `invoke sim.up` (or `invoke sim.up --ami ID` with an AMI built here)"
#: What a failed ``sim.up`` does with what it started: remove it (the default) or keep it to debug.
ON_ERROR = ("cleanup", "abort")
#: Where a failed ``sim.up`` leaves the journal of the instance it removed.
FAILED_UP_LOG = Path("build/sim-up-failed.log")
#: Where the admin password is when the console does not show it.
CONSOLE_HINT = ("a new instance prints it once its first boot is ready (wait until `invoke sim.status` says ready); the console "
                "keeps only its last 64 KiB, as on EC2, so after reboots read OS_PASSWORD in /root/openrc: "
                "`invoke sim.shell` then `grep OS_PASSWORD /root/openrc`")


@dataclass
class Sim:
    """The simulation, driven from the host."""

    settings: Settings
    log: Log = print

    def __post_init__(self) -> None:
        self.cloud = Cloud(self.settings, self.log)
        self.instances = Instances(self.cloud)

    # --- plumbing -------------------------------------------------------------------
    @property
    def state(self) -> SimState:
        """What the sim created and needs to find again (saved in its state directory)."""
        return self.cloud.state

    @state.setter
    def state(self, value: SimState) -> None:
        self.cloud.state = value

    @property
    def docker(self) -> Any:
        """Docker SDK client (ConnectError with a hint when no engine answers)."""
        return self.cloud.docker

    def ec2(self) -> Any:
        """boto3 EC2 client on the sim's moto server."""
        return self.cloud.ec2()

    def target(self) -> DockerTarget:
        """A Target into the current instance's container."""
        return self.instances.target()

    def login_user(self) -> str:
        """The default user cloud-init makes on the instance: its profile's (Debian 12's ``admin`` when unknown)."""
        return get_profile(self.state.profile or "debian-12").login_user

    def _check_instance_type(self) -> int:
        """Validate the configured instance type (before anything is made); return its memory in MiB."""
        return instance_memory_mib(self.settings.instance_type)

    def require_running(self) -> None:
        """Raise SimError unless the current instance's container and the sim daemon both run."""
        if not self.state.container or not self.instances.running():
            raise SimError("No simulated instance is running", hint="start one with `invoke sim.up`")
        if not self.cloud.daemon_alive():
            raise SimError(self.orphaned() or "The sim daemon (moto) is not running", hint=RECOVER_HINT)

    def orphaned(self) -> str | None:
        """One line when the sim daemon died under the current instance (moto forgot it), else None."""
        if self.state.instance_id and not self.cloud.daemon_alive():
            return (f"The sim daemon (moto) has died under instance {self.state.instance_id}: EC2 has forgotten it "
                    "(its AMIs are kept)")
        return None

    # --- what build.ami --sim needs: EC2 calls from elsewhere become containers ------
    def ensure_infra(self, profile: str | None = None) -> str:
        """Network, daemon, VPC and the source AMI of ``profile`` (no instance); return that AMI's id."""
        _ = self.docker  # fail early without an engine
        self.cloud.ensure()
        profile = self.cloud.choose_profile(profile)
        if not self.state.profile:
            self.state.profile = profile
            self.state.save()
        return self.cloud.source_ami(profile)

    def boot_instance(self, instance_id: str) -> str:
        """Start the container for a moto instance launched by someone else (e.g. the EC2 build); idempotent."""
        return self.instances.boot(instance_id)

    def image_instance(self, instance_id: str, ami: str) -> None:
        """Keep a stopped instance's disk as the content of ``ami`` (after moto's create_image)."""
        self.instances.image(instance_id, ami)

    def reconcile(self) -> list[str]:
        """Remove the containers (and disks) of instances moto says are terminated or gone."""
        return self.instances.reconcile()

    def adopt(self, instance_id: str) -> None:
        """Make a running instance of a built AMI (``build.ami --sim --keep-test-instance``) the sim's
        instance; one it had before is terminated and removed, as ``sim.up`` replaces one."""
        old = self.state.instance_id
        if old and old != instance_id and self.cloud.daemon_alive():
            self.ec2().terminate_instances(InstanceIds=[old])
        self.state.instance_id, self.state.container = instance_id, container_name(instance_id)
        self.state.provisioned, self.state.user_data = True, ""
        self.state.save()
        self.reconcile()
        self.log(f"instance {instance_id} ({self.state.container}) is the sim's instance now")

    # --- the lifecycle --------------------------------------------------------------
    def _wait_ready(self, timeout: float = 900) -> list[Check]:
        return wait_ready(self.target(), self.settings, timeout=timeout, log=self.log)

    def up(self, ami: str | None = None, profile: str | None = None, user_data: str | None = None, on_error: str = "cleanup") -> dict[str, Any]:
        """Launch (or find) the simulated instance, provision it, wait until ready; ``user_data`` goes to RunInstances.

        A launch that fails (an error, Ctrl-C, SIGTERM or SIGHUP) leaves nothing running that it
        started (:meth:`_undo_up`), unless ``on_error`` is ``abort``: then the instance is kept to debug.
        """
        if on_error not in ON_ERROR:
            raise SimError(f"Unknown --on-error value {on_error!r}", hint="use cleanup (the default) or abort")
        self.cloud.reload()
        self._check_instance_type()
        _ = self.docker  # fail early without an engine
        if (gone := self.orphaned()) and self.state.container and self.instances.running():
            # Replacing it silently would throw away the running instance's disk: the user decides.
            raise SimError(gone, hint=RECOVER_HINT)
        if not ami and user_data is None and self.state.container and self.instances.running() and self.cloud.daemon_alive():
            self.log(f"instance {self.state.instance_id} is already up ({self.state.container})")
            return self._provision_and_wait()
        daemon_was_up = self.cloud.daemon_alive()
        with SignalGuard(self.log) as guard:
            try:
                self.launch_unprovisioned(ami, profile, user_data)
                return self._provision_and_wait()
            except BaseException as e:
                if on_error == "cleanup":
                    with guard.shield():
                        self._undo_up(daemon_was_up, str(e) or type(e).__name__)
                else:
                    self.log(f"sim.up failed; --on-error=abort keeps instance {self.state.instance_id or '(none)'} to debug "
                             "(`invoke sim.logs`, `invoke sim.shell`; `invoke sim.down` removes it)")
                raise

    def _keep_journal(self) -> None:
        """Save the failed instance's journal of this boot (no secret is ever logged there) to :data:`FAILED_UP_LOG`, 0600."""
        try:
            if not (self.state.container and self.instances.running()):
                return
            journal = self.target().run(["journalctl", "-b", "--no-pager"], check=False, timeout=60).stdout
        except Exception as e:  # best effort: the removal matters more
            self.log(f"(the failed instance's journal could not be read: {e})")
            return
        clouds.write_private(FAILED_UP_LOG, journal)
        self.log(f"its journal is in {FAILED_UP_LOG}")

    def _provision_and_wait(self) -> dict[str, Any]:
        if not self.state.provisioned:
            provision_host.provision(self.target(), self.settings, self.state.profile, self.log)
        return self.mark_provisioned()

    def _undo_up(self, daemon_was_up: bool, why: str) -> None:
        """After a failed launch: its instance goes (terminated on moto, container and disk removed), and
        the daemon and network too when this launch started them; built AMIs and cached images stay."""
        iid = self.state.instance_id or "(not yet recorded)"
        self.log(f"sim.up failed ({why}): removing what it started (instance {iid}); `invoke sim.up --on-error=abort` keeps it to debug")
        self._keep_journal()
        self.cloud.reload()
        if daemon_was_up and self.cloud.daemon_alive():
            ec2 = self.ec2()
            ids = [i["InstanceId"] for r in ec2.describe_instances(Filters=[{"Name": "tag-key", "Values": [LABEL]}])["Reservations"]
                   for i in r["Instances"] if i["State"]["Name"] in ("pending", "running", "stopping", "stopped")]
            if ids:
                ec2.terminate_instances(InstanceIds=ids)
            self.instances.remove_all()
            self.state.provisioned = False
            self.state.save()
            removed = [f"instance {i}" for i in ids]
        else:
            removed = self.down()
        self.log("removed: " + (", ".join(removed) or "nothing was left"))

    def launch_unprovisioned(self, ami: str | None = None, profile: str | None = None, user_data: str | None = None) -> None:
        """Replace any instance with a new one: from ``ami`` (a built AMI), else from the profile's source image."""
        if ami is not None:
            validate_ami_id(ami)
        memory = self._check_instance_type()
        if ami:
            self.cloud.require_ami(ami)  # before anything is made
        if self.state.instance_id and self.cloud.daemon_alive():
            self.ec2().terminate_instances(InstanceIds=[self.state.instance_id])
        self.instances.remove_all()
        self.cloud.ensure()
        if ami:
            self.cloud.require_ami(ami)  # again: only what this sim holds is launched
            source = ami
        else:
            profile = self.cloud.choose_profile(profile)
            self.state.profile = profile
            source = self.cloud.source_ami(profile)
        self.instances.launch(source, memory, user_data=user_data or "")
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

    def _running_now(self) -> dict[str, Any]:
        """The current instance's ids (what reboot and relaunch return without waiting)."""
        return {"instance_id": self.state.instance_id, "container": self.state.container}

    def _booted(self, wait: bool) -> dict[str, Any]:
        """After the instance was (re)started: its ids at once, or its status once systemd booted and it is ready."""
        if not wait:
            return self._running_now()
        self.instances.wait_systemd()
        self._wait_ready()
        return self.status()

    def reboot(self, wait: bool = True) -> dict[str, Any]:
        """Restart the same instance: same instance-id, same IP; wait until ready (unless ``wait`` is False)."""
        self.cloud.reload()
        self.require_running()
        self.instances.reboot()
        return self._booted(wait)

    def stop(self) -> dict[str, Any]:
        """Stop the instance (EC2 StopInstances): its disk and private IP stay; nothing answers until it starts."""
        self.cloud.reload()
        self.require_running()
        self.instances.stop()
        return self.status()

    def start(self, wait: bool = True) -> dict[str, Any]:
        """Start the stopped instance: same instance-id and private IP, a new public name; wait until ready."""
        self.cloud.reload()
        if not self.state.container or not self.instances.stopped():
            raise SimError("No stopped simulated instance to start", hint="stop one with `invoke sim.stop` (or start one with `invoke sim.up`)")
        if not self.cloud.daemon_alive():
            raise SimError(self.orphaned() or "The sim daemon (moto) is not running", hint=RECOVER_HINT)
        self.instances.start()
        return self._booted(wait)

    def console(self) -> str:
        """The current instance's console output, through the EC2 API (GetConsoleOutput) as on EC2."""
        self.cloud.reload()
        if not self.state.instance_id or not self.cloud.daemon_alive():
            raise SimError("No simulated instance to read the console of", hint="start one with `invoke sim.up`")
        return str(self.ec2().get_console_output(InstanceId=self.state.instance_id).get("Output", ""))

    def _openrc_password(self) -> str | None:
        """``OS_PASSWORD`` of the instance's ``/root/openrc`` (root only), or None before it exists."""
        try:
            return parse_openrc(self.target().read(OPENRC_PATH).decode()).get("OS_PASSWORD") or None
        except FileNotFoundError:
            return None

    def write_clouds(self, path: Path) -> dict[str, str]:
        """``sim.clouds``: a ``clouds.yaml`` entry for this instance in ``path`` and its public name in /etc/hosts.

        What was written: ``clouds_yaml``, ``cacert``, ``cloud``, ``public_hostname``.
        """
        self.require_running()
        st = self.status(checks=False)
        public, private = st.get("public_hostname") or st["private_ip"], st["private_ip"]
        password = admin_password_on(self.console()) or self._openrc_password()
        if not password:
            raise SimError("No admin password on the instance's console", hint=CONSOLE_HINT)
        cacert = path.with_name(f"{clouds.CLOUD_NAME}-ca.pem")
        cacert.parent.mkdir(parents=True, exist_ok=True)
        cacert.write_bytes(self.target().read(cert_files(self.settings).cert))
        existing = path.read_text() if path.exists() else ""
        entry = clouds.render_entry(self.settings, public, password, str(cacert.resolve()))
        clouds.write_private(path, clouds.merge_clouds_yaml(existing, clouds.CLOUD_NAME, entry))
        if public != private:
            clouds.set_hosts_block(private, [public])
        return {"clouds_yaml": str(path), "cacert": str(cacert), "cloud": clouds.CLOUD_NAME, "public_hostname": public}

    def relaunch(self, wait: bool = True) -> dict[str, Any]:
        """Launch a new instance from this instance's disk: new instance-id, new IP; wait until ready (unless ``wait`` is False)."""
        self.cloud.reload()
        self.require_running()
        self.instances.relaunch(wait=wait)
        if not wait:
            return self._running_now()
        self._wait_ready()
        return self.status()

    def status(self, checks: bool = True) -> dict[str, Any]:
        """Instance-id, container, addresses, AMI, EC2 endpoint; with ``checks``, readiness of each check (seconds)."""
        self.cloud.reload()
        s: dict[str, Any] = {
            "instance_id": self.state.instance_id or None, "container": self.state.container or None,
            "private_ip": None, "public_ip": None, "public_hostname": None, "ami_id": None,
            "instance_type": None, "profile": self.state.profile or None,
            "ec2_endpoint": self.state.endpoint or None, "daemon_running": self.cloud.daemon_alive(),
            "ready": False if checks else None, "checks": {}, "amis": sorted(self.state.images),
            "problem": (gone + "; " + RECOVER_HINT) if (gone := self.orphaned()) else None,
        }
        if s["daemon_running"] and self.state.instance_id:
            res = self.ec2().describe_instances(InstanceIds=[self.state.instance_id])
            inst = res["Reservations"][0]["Instances"][0]
            s.update(private_ip=inst.get("PrivateIpAddress"), public_ip=inst.get("PublicIpAddress"),
                     public_hostname=inst.get("PublicDnsName"), ami_id=inst.get("ImageId"), instance_type=inst.get("InstanceType"),
                     state=inst["State"]["Name"])
        if checks and self.state.container and self.instances.running():
            results = check_all(self.target(), self.settings)
            s["checks"] = {c.name: {"ok": c.ok, "detail": c.detail} for c in results}
            s["ready"] = all(c.ok for c in results)
        return s

    def down(self, all_images: bool = False, keep_amis: bool = True) -> list[str]:
        """Remove everything the sim made but its built AMIs (unless not ``keep_amis``) and the cached base/OS images (unless ``all_images``)."""
        self.cloud.reload()
        removed = self.instances.remove_containers()
        return removed + self.cloud.down(all_images, keep_amis=keep_amis)

    def deregister(self, ami: str) -> list[str]:
        """Deregister ``ami`` (EC2 DeregisterImage, its snapshots deleted) and remove its content; what was removed."""
        validate_ami_id(ami)
        self.cloud.reload()
        if ami not in self.state.images:
            raise SimError(f"AMI {ami} is not in this sim", hint="`invoke sim.status` lists the sim's AMIs")
        # As on EC2, instances launched from it keep running: they have disks of their own.
        if self.cloud.daemon_alive():
            removed = deregister_image(self.ec2(), ami, self.settings.region)
        else:  # the cloud is down: its registration is only the kept record, which goes
            amis.keep_only(amis.registry_path(), set(self.state.images) - {ami})
            removed = [f"image {ami} (kept registration)"]
        return removed + self.cloud.forget_ami(ami)

