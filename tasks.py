"""ceph-openstack-ami: build a public EC2 AMI that boots into Ceph-backed OpenStack.

Tasks are thin: they parse flags, build settings and a target, call one library
function and print the outcome. Defaults live in provision.settings.Settings and can
be overridden in invoke.yaml under `coa:` or by flags.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
from typing import Any, Callable

from invoke import Collection, Exit, task

from provision import settings as settings_mod
from provision import verbosity
from provision.exceptions import NotYetImplemented, ProvisionError


def _settings(c: Any, **flags: Any) -> settings_mod.Settings:
    return settings_mod.load(c.config.get("coa", {}), **flags)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn our errors into one clear line and a non-zero exit (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ProvisionError as e:
            raise Exit(f"error: {e}", code=2 if isinstance(e, NotYetImplemented) else 1) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None

    return wrapper


#: The output level of the task running now (-q / default / -v).
_level = [verbosity.NORMAL]


def _log(msg: str) -> None:
    if verbosity.shown(msg, _level[0]):
        print(msg, flush=True)


def _err_log(msg: str) -> None:
    """Progress of a task whose stdout is its JSON result."""
    if verbosity.shown(msg, _level[0]):
        print(msg, file=sys.stderr, flush=True)


OUTPUT_HELP = {
    "quiet": "print only the result and problems (no steps, no progress)",
    "verbose": "also print each command run on the instance or builder, with its exit status and time",
}


def long_task(help: dict[str, str] | None = None, **kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
    """A task that prints its steps: it takes -q/--quiet and -v/--verbose (first, so the letters are theirs)."""

    def decorate(fn: Callable[..., Any]) -> Any:
        sig = inspect.signature(fn)
        first, *rest = sig.parameters.values()
        flags = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=False) for n in OUTPUT_HELP]

        @functools.wraps(fn)
        def body(c: Any, *args: Any, quiet: bool = False, verbose: bool = False, **kw: Any) -> Any:
            _level[0] = verbosity.level(quiet, verbose)
            verbosity.apply(_level[0], _log)
            try:
                return fn(c, *args, **kw)
            finally:
                _level[0] = verbosity.NORMAL
                verbosity.apply(verbosity.NORMAL, _log)

        body.__signature__ = sig.replace(parameters=[first, *flags, *rest])  # type: ignore[attr-defined]
        return task(help={**OUTPUT_HELP, **(help or {})}, **kwargs)(friendly(body))

    return decorate


def _sim(c: Any, **flags: Any) -> Any:
    from sim.lifecycle import Sim

    return Sim(_settings(c, **flags), log=_log)


def _print_status(status: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return
    if status.get("problem"):
        print(f"problem: {status['problem']}")
    for key in ("instance_id", "container", "private_ip", "public_ip", "public_hostname", "ami_id", "instance_type", "profile", "ec2_endpoint", "ready"):
        print(f"{key:16} {status.get(key)}")
    for name, check in status.get("checks", {}).items():
        print(f"  {'ok ' if check['ok'] else 'NOT'} {name}: {check['detail']}")


# --- sim ---------------------------------------------------------------------------
@long_task(help={
    "ami": "launch from an AMI built with `build.ami --sim` instead of provisioning a fresh instance",
    "profile": "distribution profile: debian-12 or ubuntu-24.04 (default: ubuntu-24.04 if it can be pulled, else debian-12)",
    "instance-type": "EC2 instance type to simulate (default m1.xlarge; memory limit follows it)",
    "imdsv2-required": "refuse IMDSv1 in the instance metadata service",
    "user-data": "a file whose content is the instance's user data (RunInstances UserData; e.g. a #cloud-config)",
    "on-error": "cleanup (default: a failed launch removes what it started, its journal kept in build/sim-up-failed.log) "
                "or abort (keep the failed instance to debug)",
})
def up(c, ami=None, profile=None, instance_type=None, imdsv2_required=False, user_data=None, on_error="cleanup"):
    """Build what is missing, launch a simulated EC2 instance, provision it and wait until ready.

    A launch that fails, or is stopped by Ctrl-C, SIGTERM or SIGHUP, leaves nothing running that
    it started: its instance is terminated and removed (and the sim daemon and network, when this
    run started them); built AMIs and cached images stay. --on-error=abort keeps the instance.
    """
    sim = _sim(c, instance_type=instance_type, metadata_allow_v1=False if imdsv2_required else None)
    status = sim.up(ami=ami, profile=profile, user_data=_read_user_data(user_data), on_error=on_error)
    _print_status(status, False)
    _print_reach(sim, status)


def _print_reach(sim: Any, status: dict[str, Any]) -> None:
    from sim.reach import demo_server_record, reach_lines

    guest = demo_server_record(sim.target(), sim.settings) if status.get("state") == "running" else None
    print("\n".join(reach_lines(status, sim.settings, str(sim.state.key_path), sim.login_user(), guest)))


def _read_user_data(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise Exit(f"error: cannot read the user data file {path!r}: {e.strerror}", code=1) from None


@long_task(help={"all": "also remove the AMIs built in the sim and the cached base and OS images"})
def down(c, all=False):
    """Remove every container, network and process the sim made (safe to run twice).

    AMIs built in the sim stay, as on EC2 (`invoke sim.up --ami ID` launches one later; `invoke
    ami.deregister ID --sim` removes one); --all removes them and the cached images too.
    """
    removed = _sim(c).down(all_images=all)
    print("\n".join(f"removed {r}" for r in removed) or "nothing to remove")


@task(help={"json": "print machine-readable JSON (without the readiness checks: well under a second; add --check for them)",
            "check": "with --json: run the readiness checks too (the human output always runs them)"})
@friendly
def status(c, json=False, check=False):
    """Show the simulated instance: ids, addresses, AMI, EC2 endpoint, and readiness of each check."""
    sim = _sim(c)
    result = sim.status(checks=check or not json)
    _print_status(result, json)
    if not json:
        _print_reach(sim, result)


@long_task()
def reboot(c):
    """Restart the same simulated instance (same instance-id, same IP) and wait until ready."""
    _print_status(_sim(c).reboot(), False)


@long_task()
def stop(c):
    """Stop the simulated instance (EC2 StopInstances): its disk and private IP stay."""
    _print_status(_sim(c).stop(), False)


@long_task()
def start(c):
    """Start the stopped instance: same instance-id and private IP, a new public name; wait until ready."""
    _print_status(_sim(c).start(), False)


@task(help={"lines": "only the last N lines"})
@friendly
def console(c, lines=0):
    """Print the instance's console output through the EC2 API (GetConsoleOutput), as its owner reads it."""
    text = _sim(c).console()
    print("\n".join(text.splitlines()[-int(lines):]) if int(lines) else text, end="" if text.endswith("\n") else "\n")


@task(help={"path": "where to write clouds.yaml (default build/clouds.yaml)",
            "user": "write the user's ~/.config/openstack/clouds.yaml instead (other clouds in it are kept)"})
@friendly
def clouds(c, path=None, user=False):
    """Write a clouds.yaml entry `cephdemo-sim` for the sim's cloud, and its public name in /etc/hosts.

    Then from this host: `OS_CLIENT_CONFIG_FILE=build/clouds.yaml openstack --os-cloud cephdemo-sim server list`
    (no variable needed with --user). Run it again after sim.start or sim.relaunch: the public name changes.
    """
    from pathlib import Path

    from sim.clouds import DEFAULT_PATH, USER_PATH

    target = USER_PATH.expanduser() if user else Path(path) if path else DEFAULT_PATH
    done = _sim(c).write_clouds(target)
    print(f"wrote {done['clouds_yaml']} (cloud {done['cloud']}, 0600) and {done['cacert']}; "
          f"{done['public_hostname']} resolves here through /etc/hosts")
    env = "" if user else f"OS_CLIENT_CONFIG_FILE={done['clouds_yaml']} "
    print(f"try: {env}openstack --os-cloud {done['cloud']} server list")


@long_task()
def relaunch(c):
    """Launch a new instance from this one's disk (new instance-id, new IP) and wait until ready."""
    _print_status(_sim(c).relaunch(), False)


@task
@friendly
def shell(c):
    """Open a root shell inside the simulated instance."""
    sim = _sim(c)
    sim.require_running()
    os.execvp("docker", ["docker", "exec", "-it", sim.state.container, "bash", "-l"])


@task(help={"follow": "keep printing new lines", "all": "the whole journal of this boot, not only the boot jobs"})
@friendly
def logs(c, follow=False, all=False):
    """Print the boot jobs' and cloud-init's logs (journal of the coa-* and cloud-* units) from the simulated instance."""
    sim = _sim(c)
    sim.require_running()
    units = [] if all else ["-u", "coa-*", "-u", "cloud-*.service"]
    args = ["docker", "exec", "-it" if follow else "-i", sim.state.container, "journalctl", "-b", "--no-pager", *units]
    os.execvp("docker", args + (["-f"] if follow else []))


# --- provision ---------------------------------------------------------------------
@long_task(help={
    "host": "address of the host to provision over SSH",
    "user": "login user (default: the profile's, e.g. admin on Debian)",
    "key": "private key file (default: the SSH agent)",
    "port": "SSH port",
    "profile": "distribution profile of the host: debian-12 or ubuntu-24.04",
    "target": "a target spec instead of --host: local, docker://NAME or ssh://USER@HOST[:PORT]",
})
def host(c, host=None, user=None, key=None, port=22, profile="debian-12", target=None):
    """Provision an existing host (over SSH, or any target spec) into the AMI's content."""
    from provision.host import provision
    from provision.profiles import get_profile
    from provision.target import from_spec

    settings = _settings(c)
    prof = get_profile(profile)
    if not target and not host:
        raise Exit("error: give --host HOST (or --target SPEC)", code=1)
    spec = target or f"ssh://{user or prof.login_user}@{host}:{port}"
    options: dict[str, Any] = {}
    if spec.startswith("ssh://"):
        options = {"key_filename": key, "retries": settings.ssh_retries, "retry_delay": settings.ssh_retry_delay_s,
                   "connect_timeout": settings.ssh_connect_timeout_s, "log": _log}
    with from_spec(spec, **options) as t:
        provision(t, settings, prof.name, log=_log)


# --- build / ami / bench -----------------------------------------------------------
@long_task(help={
    "sim": "build against the simulation: moto is EC2, the builder is a sim instance reached over SSH",
    "public": "make the AMI public (launch permission all); the audit gate always runs first",
    "regions": "comma-separated regions to copy the AMI to (each copy published with --public)",
    "name": "AMI name (default ceph-openstack-<profile>-<UTC time>)",
    "force": "replace an existing AMI of the same name, only once the new one is available (made under a temporary name, then again under the name)",
    "on-error": "cleanup (default: remove every temporary resource) or abort (keep the builder to debug)",
    "profile": "distribution profile (default: the one the sim ran, see build/sim-proven.json)",
    "source-ami": "source AMI id instead of the profile's newest official image (its owner must be the profile's publisher)",
    "trust-source-owner": "accept a --source-ami whose owner is not the profile's publisher",
    "region": "AWS region of the build",
    "instance-type": "builder instance type (default m1.xlarge)",
    "caller-ip": "the address SSH is admitted from (default: discovered)",
    "allow-cidr": "admit SSH from this CIDR instead of the caller's /32 (wider than one address: a warning; 0.0.0.0/0 or ::/0: refused without --allow-world)",
    "allow-world": "accept --allow-cidr 0.0.0.0/0 or ::/0 (SSH to the builder from the whole internet)",
    "allow-unproven": "build a profile no simulation run has proven",
    "key": "use this private key instead of a temporary key pair",
    "wait-delay": "seconds between state checks",
    "wait-attempts": "state checks before a wait gives up",
    "skip-verify": "do not run the test stage (an instance of the image booted, rebooted and read) before publishing",
    "keep-test-instance": "keep the test stage's instance running once the build succeeds (the image's first instance, tested; "
                          "with its security group and key pair); with --sim it becomes the sim's instance",
    "dry-run": "check everything without making anything: credentials, region, instance type, source image, name, publishability, and EC2's DryRun of launching the builder, its security group and key pair (permissions: aws/build-ami-policy.json)",
})
def ami(c, sim=False, public=False, regions=None, name=None, force=False, on_error="cleanup", profile=None,
        source_ami=None, region=None, instance_type=None, caller_ip=None, allow_cidr=None, allow_unproven=False,
        key=None, wait_delay=None, wait_attempts=None, trust_source_owner=False, allow_world=False, dry_run=False,
        skip_verify=False, keep_test_instance=False):
    """Build the AMI: launch a builder, update, provision, scrub, audit, image, test, publish, copy, clean up.

    The test stage launches an instance of the new image, waits until it is ready, reads its
    console (the admin-password line must be there), reboots it and waits again (its SSH host
    key must not be the builder's); only then is the image made public, copied and marked
    verified in the manifest. A failed test leaves the image private (removed with the
    default --on-error=cleanup).

    Ctrl-C, SIGTERM and SIGHUP all end the build the same way: everything it made is removed
    (builder, key pair, security group, images and their snapshots) and it exits non-zero.
    """
    settings = _settings(c, region=region, instance_type=instance_type, wait_delay_s=wait_delay, wait_attempts=wait_attempts)
    region_list = [r.strip() for r in (regions or "").split(",") if r.strip()]
    if sim:
        from sim.build import build_ami_sim

        result = build_ami_sim(settings, public=public, regions=region_list, ami_name=name, force=force,
                               on_error=on_error, profile=profile, log=_log, dry_run=dry_run, verify=not skip_verify,
                               keep_test_instance=keep_test_instance)
    else:
        from provision.ec2.builder import build_ami

        result = build_ami(settings, profile=profile, source_ami=source_ami, public=public, regions=region_list, ami_name=name,
                           force=force, on_error=on_error, caller_ip=caller_ip, allow_cidr=allow_cidr,
                           allow_world=allow_world, trust_source_owner=trust_source_owner,
                           allow_unproven=allow_unproven, key_file=key, log=_log, dry_run=dry_run, verify=not skip_verify,
                           keep_test_instance=keep_test_instance)
    if isinstance(result, list):
        print("dry run: the build would pass every check; nothing was made")
        return
    for reg, ami_id in result.ami_ids.items():
        print(f"{reg}: {ami_id}")
    print(f"manifest: {result.manifest_path}")
    if result.test_instance is not None:
        print(f"test instance: {result.test_instance.instance_id} (kept running: {result.test_instance.ssh_command()})")


@task(
    iterable=["allow"],
    help={
        "target": "what to scan: docker://NAME, ssh://USER@HOST[:PORT] or local",
        "key": "private key file for an ssh:// target (default: the SSH agent)",
        "allow": "allow findings matching GLOB or KIND:GLOB (repeatable); nothing is allowed by default",
        "cluster-keyrings": "allow the Ceph cluster's keyrings, which the image's first boot rotates per instance",
        "image": "allow what the build's gate allows (the cluster's keyrings and the databases first boot renews)",
    },
)
@friendly
def audit(c, target=None, key=None, allow=None, cluster_keyrings=False, image=False):
    """Scan a host for anything that must not be in a public image; non-zero exit with a report."""
    from provision.image.audit import CLUSTER_KEYRINGS, require_clean
    from provision.image.audit import audit as run_audit
    from provision.image.prepare import IMAGE_ALLOW
    from provision.target import from_spec

    if not target:
        raise Exit("error: give --target docker://NAME or ssh://USER@HOST[:PORT]", code=1)
    settings = _settings(c)
    options = {"key_filename": key} if target.startswith("ssh://") else {}
    allowed = list(allow or []) + (list(CLUSTER_KEYRINGS) if cluster_keyrings else []) + (list(IMAGE_ALLOW) if image else [])
    with from_spec(target, **options) as t:
        report = run_audit(t, settings, allow=allowed)
    print("\n".join(report.lines()))
    require_clean(report)


@task(help={"ami-id": "the AMI to deregister (ami-...)", "sim": "the simulation's AMI (its content goes too)",
            "region": "the AWS region it is registered in (default: the settings' region)"})
@friendly
def deregister(c, ami_id, sim=False, region=None):
    """Deregister an AMI and delete its snapshots: on AWS, or in the simulation with --sim (where AMIs outlive sim.down)."""
    settings = _settings(c, region=region)
    if sim:
        removed = _sim(c, region=region).deregister(ami_id)
    else:
        from provision.ec2.deregister import deregister_ami

        removed = deregister_ami(settings, ami_id)
    print("\n".join(f"removed {r}" for r in removed))


@long_task(help={"runs": "runs per scenario (default 3)"})
def boot(c, runs=3):
    """Benchmark: seconds from container start to each boot milestone, same IP and new instance, as JSON."""
    from sim.bench import bench_boot

    result = bench_boot(_settings(c), runs=int(runs), log=_err_log)
    print(json.dumps(result, indent=2, sort_keys=True))


@long_task(name="provision")
def bench_provision(c):
    """Benchmark: first and second (idempotent) provisioning of a fresh sim instance, as JSON."""
    from sim.bench import bench_provision as run

    result = run(_settings(c), log=_err_log)
    print(json.dumps(result, indent=2, sort_keys=True))


# --- cluster -----------------------------------------------------------------------
@task(help={
    "ttl": "the token's lifetime in seconds (default: cluster.token_ttl_s, 3600)",
    "target": "the controller as a target spec (ssh://USER@HOST[:PORT], docker://NAME); default: the sim's instance",
    "key": "private key file for an ssh:// target (default: the SSH agent)",
})
@friendly
def token(c, ttl=None, target=None, key=None):
    """Issue a join token on the controller: one line for a new node's user data (README, Cluster).

    The token is single-use and expires; the controller's join service listens only until every
    token has expired or been revoked. Prints the token line (a secret: it joins one node) on
    stdout, and what it is for on stderr.
    """
    from provision.cluster.remote import issue
    from provision.target import from_spec

    if target:
        options = {"key_filename": key} if target.startswith("ssh://") else {}
        with from_spec(target, **options) as t:
            got = issue(t, int(ttl) if ttl else None)
    else:
        sim = _sim(c)
        sim.require_running()
        got = issue(sim.target(), int(ttl) if ttl else None)
    print(f"join token {got['id']} for node {got['node_name']}, expires at {got['expires']} (epoch s)", file=sys.stderr)
    print(got["token"])


# --- test --------------------------------------------------------------------------
@task(help={
    "offline": "only the fast tier that needs no Docker",
    "full": "also the reliability tier, with its full counts (10 reboots, 5 relaunches)",
    "reliability": "also the reliability tier, with its CI counts (2 reboots, 1 relaunch)",
    "k": "only tests matching this pytest -k expression",
})
def test(c, offline=False, full=False, reliability=False, k=None):
    """Run the test suite (what .ci/run runs): offline tier, then the Docker/sim tier; the reliability tier on request.

    The reliability tier (reboots and relaunches in a row, faults) adds about 15 minutes: CI's
    budget (60 minutes on a fresh machine) cannot pay for it beside the session build.
    """
    env = {"TESTCONTAINERS_RYUK_DISABLED": "true"}
    if full:
        env["COA_TEST_FULL"] = "1"
    args = [sys.executable, "-m", "pytest", "tests", "--durations=25"]  # where the time goes
    if offline:
        args += ["-m", "not docker and not reliability"]
    elif not (full or reliability):
        args += ["-m", "not reliability"]
    if k:
        args += ["-k", k]
    c.run(" ".join(__import__("shlex").quote(a) for a in args), env=env, pty=False)


sim_ns = Collection("sim", up, down, status, reboot, stop, start, relaunch, console, clouds, shell, logs)
sim_ns.__doc__ = "The simulation: a Docker container plays an EC2 instance, moto plays EC2."
provision_ns = Collection("provision", host)
provision_ns.__doc__ = "Provision a host into the AMI's content."
build_ns = Collection("build", ami)
build_ns.__doc__ = "Build the AMI (on AWS, or against the simulation with --sim)."
ami_ns = Collection("ami", audit, deregister)
ami_ns.__doc__ = "Inspect images and hosts; deregister an AMI."
bench_ns = Collection("bench", boot, bench_provision)
bench_ns.__doc__ = "Benchmarks that print JSON figures."
cluster_ns = Collection("cluster", token)
cluster_ns.__doc__ = "Several instances of the AMI as one cloud (in progress: the join token)."

ns = Collection(test)
for sub in (sim_ns, build_ns, provision_ns, ami_ns, bench_ns, cluster_ns):
    ns.add_collection(sub)
ns.configure({"coa": settings_mod.as_dict(settings_mod.Settings()), "run": {"echo": True}})
