"""The sim's long-lived host process: moto as the EC2 API, and the instance metadata service.

Started detached by ``sim.up`` and stopped by ``sim.down``; moto's state lives as long
as this process, except the AMI registrations, which it keeps in a file and starts with
(:mod:`sim.amis`). The metadata service listens on 169.254.169.254:80 (an address the sim
puts on its Docker bridge) and answers each container with the data moto holds for the
instance whose private IP is the request's source address.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import os
import signal
import sys
import threading
import time
from pathlib import Path

from . import amis, console
from .aws import FAKE_CREDENTIALS, ec2_client
from .imds import IMDSServer
from .imds_tree import InstanceView, instance_view
from .instance import container_name


class MotoResolver:
    """Map a request's source address to the view of the instance moto holds for it."""

    def __init__(self, endpoint: str, region: str) -> None:
        self.ec2 = ec2_client(endpoint, region)
        self.region = region
        self._keys: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, client_ip: str) -> InstanceView | None:
        """The view of the pending or running instance at ``client_ip``, or None."""
        with self._lock:
            res = self.ec2.describe_instances(
                Filters=[
                    {"Name": "private-ip-address", "Values": [client_ip]},
                    {"Name": "instance-state-name", "Values": ["pending", "running"]},
                ]
            )
            instances = [i for r in res["Reservations"] for i in r["Instances"]]
            if not instances:
                return None
            inst = instances[0]
            attr = self.ec2.describe_instance_attribute(InstanceId=inst["InstanceId"], Attribute="userData")
            encoded = (attr.get("UserData") or {}).get("Value")
            user_data = base64.b64decode(encoded) if encoded else None
            key = None
            if inst.get("KeyName"):
                if inst["KeyName"] not in self._keys:
                    kp = self.ec2.describe_key_pairs(KeyNames=[inst["KeyName"]], IncludePublicKey=True)["KeyPairs"]
                    self._keys[inst["KeyName"]] = kp[0].get("PublicKey", "") if kp else ""
                key = self._keys[inst["KeyName"]] or None
        return instance_view(inst, key, self.region, user_data=user_data)


def restore_amis(registry: Path) -> int:
    """Have moto start with the registrations kept in ``registry`` (before moto is imported); how many."""
    records = amis.read(registry)
    if records:
        spec = importlib.util.find_spec("moto")
        moto_dir = Path(list(spec.submodule_search_locations or [])[0]) if spec else Path()
        load = amis.moto_load_file(records, moto_dir / "ec2/resources/amis.json", registry.with_suffix(".load.json"))
        os.environ["MOTO_AMIS_PATH"] = str(load)
    return len(records)


def main(argv: list[str] | None = None) -> int:
    """Run moto and the metadata service until SIGTERM."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True, help="moto's port on 127.0.0.1")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--imds-host", default="169.254.169.254")
    p.add_argument("--imds-port", type=int, default=80)
    p.add_argument("--amis", type=Path, default=None, help="keep this account's AMI registrations in this file (and start with those in it)")
    args = p.parse_args(argv)
    os.environ.update(FAKE_CREDENTIALS)
    restored = restore_amis(args.amis) if args.amis else 0

    from moto.server import ThreadedMotoServer

    console.install(console.docker_console(container_name))
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{args.port}"
    imds = IMDSServer(args.imds_host, args.imds_port, MotoResolver(endpoint, args.region))
    imds.start()
    keeper = None
    if args.amis:
        ec2 = ec2_client(endpoint, args.region)
        keeper = amis.RegistryKeeper(lambda: amis.own_records(ec2), args.amis)
        keeper.start()
        print(f"AMI registrations kept in {args.amis} ({restored} restored)", flush=True)
    print(f"sim daemon ready: moto {endpoint}, metadata http://{args.imds_host}:{args.imds_port}", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set():
        time.sleep(0.5)
    imds.stop()
    if keeper:
        keeper.stop()
    moto.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
