"""The controller's command line: ``python3 -m provision.cluster COMMAND`` (as root, on the controller).

* ``token [--ttl S]``: issue a join token; prints one JSON line ``{"token", "id", "node_name", "expires"}``;
* ``serve``: the join endpoint (what ``coa-join.service`` runs) until every token has expired or been revoked;
* ``revoke ID``: a token can no longer join (its cephx user is removed);
* ``list``: the tokens (never a secret or its hash) as one JSON line.

Errors are one JSON line ``{"error": "..."}`` and exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from ..exceptions import ProvisionError
from ..settings import load_installed
from ..target.local import LocalTarget
from .controller import issue_token, retire_join_users, serve, store_path
from .service import FileStore
from .token import revoke


def parser() -> argparse.ArgumentParser:
    """The command line's parser."""
    p = argparse.ArgumentParser(prog="python3 -m provision.cluster")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("token", help="issue a join token (and start the join service)")
    t.add_argument("--ttl", type=int, default=None, help="lifetime in seconds (default: cluster.token_ttl_s)")
    sub.add_parser("serve", help="the join endpoint, until every token has expired or been revoked")
    r = sub.add_parser("revoke", help="revoke the token ID")
    r.add_argument("id")
    sub.add_parser("list", help="the tokens, without secrets")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command; 0 on success."""
    args = parser().parse_args(argv)
    settings = load_installed()
    target = LocalTarget()
    store = FileStore(store_path(settings))
    now = int(time.time())

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        if args.cmd == "serve":
            return serve(target, settings, log=lambda line: print(line, flush=True))
        if args.cmd == "token":
            line, rec = issue_token(target, settings, store, now, args.ttl, log=log)
            print(json.dumps({"token": line, "id": rec.id, "node_name": rec.node_name, "expires": rec.expires}))
        elif args.cmd == "revoke":
            with store.locked():
                records = revoke(store.load(), args.id)
                store.save(records)
            gone = retire_join_users(target, settings, records, now, log=log)
            print(json.dumps({"id": args.id, "revoked": args.id in records, "removed": gone}))
        else:
            with store.locked():
                records = store.load()
            print(json.dumps({"tokens": [
                {"id": r.id, "node_name": r.node_name, "issued": r.issued, "expires": r.expires,
                 "used_at": r.used_at, "used_by": r.used_by, "revoked": r.revoked}
                for r in sorted(records.values(), key=lambda r: r.issued)]}))
    except ProvisionError as e:
        print(json.dumps({"error": e.message}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
