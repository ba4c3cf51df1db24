"""
The C{muxpool status | enable | disable | drain} command-line verbs: a small
client of the admin API (see L{muxpool.ops.AdminService}).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Dict, Optional, Tuple

DEFAULT_URL = "http://127.0.0.1:8080"


def addAdminArguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--admin",
        default=os.environ.get("MUXPOOL_ADMIN", DEFAULT_URL),
        help=f"admin API base URL (default $MUXPOOL_ADMIN or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token-file", help="file holding the admin token (default $MUXPOOL_ADMIN_TOKEN)"
    )


def _token(args) -> Optional[str]:
    if args.token_file:
        with open(args.token_file) as f:
            return f.read().strip()
    return os.environ.get("MUXPOOL_ADMIN_TOKEN", "").strip() or None


def call(args, method: str, path: str, timeout: float = 60.0) -> Tuple[int, Dict]:
    """
    One request to the admin API: (HTTP status, decoded JSON body).
    """
    request = urllib.request.Request(
        args.admin.rstrip("/") + path, method=method, data=b"" if method == "POST" else None
    )
    token = _token(args)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"{}")
        except ValueError:
            return e.code, {"error": e.reason}


def renderStatus(status: Dict) -> str:
    """
    The status, for people: each pool with its members' state.
    """
    lines = []
    pools = status.get("pools", [])
    channels = status.get("channels", [])
    servers = status.get("servers", [])
    # Columns as wide as the longest name, however long the names are.
    members = [m["name"] for pool in pools for m in pool["members"]] or ["(no members deployed)"]
    memberWidth = max(28, *(len(name) for name in members))
    width = max([24] + [len(bean["name"]) for bean in channels + servers])
    for pool in pools:
        worker = f" [worker {pool['worker']}]" if "worker" in pool else ""
        lines.append(
            f"pool {pool['name']}{worker} ({pool['strategy']}, {pool['in_flight']} in flight)"
            + ("" if pool["usable"] else "  NOT USABLE")
        )
        for member in pool["members"] or [
            {"name": "(no members deployed)", "state": "", "in_flight": 0, "requests": 0}
        ]:
            lines.append(
                f"  {member['name']:<{memberWidth}} {member['state']:<10} "
                f"{member['in_flight']:>5} in flight {member['requests']:>9} requests"
            )
    for channel in channels:
        why = f"  ({channel['last_failure']})" if channel.get("last_failure") else ""
        lines.append(
            f"channel {channel['name']:<{width}} "
            f"{'ready' if channel['ready'] else 'NOT READY':<10} {channel['target']}{why}"
        )
    for server in servers:
        lines.append(
            f"server  {server['name']:<{width}} {server['listening'] or 'NOT LISTENING':<22} "
            f"{server['sessions']} sessions, {server['in_flight']} in flight"
        )
    for file, error in status.get("deploy", {}).get("failed", {}).items():
        lines.append(f"FAILED {file}: {error}")
    return "\n".join(lines)


def runAdminCommand(args) -> int:
    """
    Run the verb in C{args.command}; the exit status.
    """
    try:
        if args.command == "status":
            code, body = call(args, "GET", "/status")
            if code == 200:
                print(
                    json.dumps(body, indent=1, sort_keys=True) if args.json else renderStatus(body)
                )
                return 0
        else:
            path = f"/muxes/{urllib.parse.quote(args.name, safe='')}/{args.command}"
            if args.command == "drain":
                path += f"?timeout={args.timeout:g}"
            code, body = call(args, "POST", path, timeout=getattr(args, "timeout", 30) + 10)
            if code == 200:
                done = {"enable": "enabled", "disable": "disabled", "drain": "drained"}[
                    args.command
                ]
                print(f"{args.name}: {done} in {', '.join(body['pools']) or 'no pool'}")
                return 0
    except (urllib.error.URLError, OSError) as e:
        print(
            f"muxpool {args.command}: cannot reach the admin API at {args.admin}: "
            f"{getattr(e, 'reason', e)}",
            file=sys.stderr,
        )
        return 2
    print(f"muxpool {args.command}: HTTP {code}: {body.get('error', body)}", file=sys.stderr)
    return 1
