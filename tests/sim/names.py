"""The instance's names are ours after every way back (reboot, new instance, stop/start), and the
distribution's cloud-init ran against the sim's metadata without an error (issue 16, point 1).

cloud-init manages the hostname and ``/etc/hosts`` at every boot unless told not to; the image's
drop-in (:data:`provision.hostname.CLOUD_INIT_CFG`) tells it, and the hostname boot job writes both
files. These checks compare what is on the instance with what that job renders for the instance
moto describes, so a cloud-init that wrote its own name or hosts file fails them.
"""

from __future__ import annotations

import json
from typing import Any

from provision import hostname

#: The metadata service's latest API, as a client inside the instance asks it.
IMDS = "http://169.254.169.254/latest"


def imds_get(target: Any, path: str, check: bool = True) -> str:
    """Read one metadata path from inside the instance with IMDSv2, as any client there would
    (``check=False``: the HTTP status code instead of the body)."""
    fetch = "curl -sf -m 3" if check else "curl -s -m 3 -o /dev/null -w '%%{http_code}'"
    script = (
        "t=$(curl -sf -m 3 -X PUT %s -H 'X-aws-ec2-metadata-token-ttl-seconds: 60') && "
        f"{fetch} -H \"X-aws-ec2-metadata-token: $t\" %s"
    )
    return str(target.run(script, f"{IMDS}/api/token", f"{IMDS}/{path}").stdout)


def describe(sim: Any) -> dict[str, Any]:
    """moto's description of the sim's current instance."""
    iid = sim.status_ids()["instance_id"]
    return sim.ec2().describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]


def cloud_init_result(sim: Any) -> dict[str, Any]:
    """cloud-init's own record of this boot (``/run/cloud-init/result.json``), once it has finished.

    ``cloud-init status --wait`` waits for its last stage and exits non-zero when a stage failed.
    """
    status = sim.target.run("cloud-init status --wait --long", timeout=300, check=False)
    assert status.ok and "status: done" in status.stdout, f"cloud-init did not finish cleanly:\n{status.stdout}{status.stderr}"
    result: dict[str, Any] = json.loads(sim.target.read("/run/cloud-init/result.json"))["v1"]
    return result


def assert_cloud_init_done_and_names_ours(sim: Any) -> None:
    """cloud-init is done with the EC2 datasource and no error; hostname, FQDN and /etc/hosts are ours."""
    result = cloud_init_result(sim)
    assert result == {"datasource": "DataSourceEc2", "errors": []}, result
    inst, t, short = describe(sim), sim.target, sim.settings.hostname
    # It took the platform for EC2 (the sim's shim), so it asked with an IMDSv2 token, as on EC2
    # (an instance launched with HttpTokens=required, as build.ami's are, refuses IMDSv1).
    assert t.run("cloud-init query cloud_name").stdout.strip() == "aws"
    assert "Fetching Ec2 IMDSv2 API Token" in t.read("/var/log/cloud-init.log").decode()
    public, private, local = inst.get("PublicDnsName") or None, inst["PrivateIpAddress"], inst["PrivateDnsName"]
    assert t.run("hostname").stdout.strip() == short
    assert t.read("/etc/hostname").decode() == hostname.render_hostname(short)
    assert t.read("/etc/hosts").decode() == hostname.render_hosts(short, public, private, local)
    assert t.run("hostname --fqdn").stdout.strip() == hostname.host_names(short, public, local)[0]
