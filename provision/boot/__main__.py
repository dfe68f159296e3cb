"""Command line of the boot agent: ``python3 -m provision.boot run JOB`` (what each unit runs) and ``list``."""

from __future__ import annotations

import argparse
import sys

from ..exceptions import ProvisionError
from ..settings import load_installed
from .context import log
from .jobs import jobs
from .runner import run_job


def main(argv: list[str] | None = None) -> int:
    """Run one boot job, or list them; exit 1 with one line when a job fails."""
    parser = argparse.ArgumentParser(prog="python3 -m provision.boot", description="The boot agent's jobs (one systemd unit each).")
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run one boot job")
    r.add_argument("job")
    sub.add_parser("list", help="list the boot jobs in order")
    args = parser.parse_args(argv)
    settings = load_installed()
    if args.cmd == "list":
        for j in jobs(settings):
            print(f"{j.unit:28} per-{j.per:8} {j.description}")
        return 0
    try:
        run_job(args.job, settings)
    except ProvisionError as e:
        log(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
