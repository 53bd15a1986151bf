"""`coordctl`: read and steer a running coordinator.

    coordctl [--address HOST:PORT] [--json] COMMAND ...   (or COMMAND ... --json)

Exit codes: 0 ok, 1 refused by the coordinator, 2 usage or bad input (unknown VM),
3 coordinator unreachable, 4 authentication failed, 5 a migrate/pause/resume got no
answer in time (it may have been applied).
"""

from __future__ import annotations

import argparse
import functools
import getpass
import json
import math
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console, RenderableType
from rich.live import Live

from coordinator.api.v1 import admin_pb2
from coordinator.ctl import render
from coordinator.ctl.connection import Admin, ConfigError, CtlError, Exit, resolve
from coordinator.ctl.literal import escape, literal
from coordinator.ctl.views import document, to_plain

EPILOG = """\
connection: --address, else COORDCTL_ADDRESS, else `address:` in the config file
(--config, COORDCTL_CONFIG or ~/.config/stealbalancer/coordctl.yaml), else
127.0.0.1:50052. Token: COORDCTL_TOKEN, COORDCTL_TOKEN_FILE / --token-file, or
`token:`/`token_file:` in the config file. TLS: --ca (and --cert/--key for mTLS).

exit codes: 0 ok, 1 refused by the coordinator, 2 usage or bad input (e.g. unknown
VM), 3 coordinator unreachable, 4 authentication failed, 5 migrate/pause/resume got
no answer within --timeout: it may have been applied (check `coordctl migrations`).
"""


@dataclass(frozen=True, slots=True)
class Ctx:
    admin: Admin
    args: argparse.Namespace
    console: Console


Command = Callable[[Ctx], int]


def _emit(ctx: Ctx, name: str, response: Any, human: Callable[[Any], RenderableType]) -> int:
    if ctx.args.json:
        print(json.dumps(document(name, to_plain(response)), indent=2, sort_keys=True))
    else:
        shown = human(response)
        ctx.console.print(literal(shown) if isinstance(shown, str) else shown)
    return Exit.OK


# The server's page size cap (coordinator/service/paging.py); asking for more is harmless.
_PAGE = 1000


def _listing(ctx: Ctx, method: str, request: Any, field: str) -> Any:
    """All pages of a List call up to --limit, merged into one response; with
    --page-size, only the page --page-token points at (its next token is kept)."""
    args = ctx.args
    request.page_token = args.page_token or ""
    if args.page_size:
        request.page_size = args.page_size
        return _hint_next(ctx, ctx.admin.call(method, request))
    return _hint_next(ctx, collect(ctx.admin, method, request, field, getattr(args, "limit", 0)))


def collect(admin: Admin, method: str, request: Any, field: str, limit: int = 0) -> Any:
    """Page through a List call from `request.page_token` until `limit` items (0 = all)
    or the last page; one response holding them all, with the token to go on from."""
    merged = None
    while True:
        have = len(getattr(merged, field)) if merged is not None else 0
        request.page_size = min(limit - have, _PAGE) if limit else _PAGE
        page = admin.call(method, request)
        if merged is None:
            merged = page
        else:
            getattr(merged, field).extend(getattr(page, field))
            merged.next_page_token = page.next_page_token
        if not page.next_page_token or (limit and len(getattr(merged, field)) >= limit):
            return merged
        request.page_token = page.next_page_token


def _hint_next(ctx: Ctx, response: Any) -> Any:
    if response.next_page_token and not ctx.args.json:
        token = escape(response.next_page_token)
        print(f"coordctl: more follow: --page-token {token}", file=sys.stderr)
    return response


def _status(ctx: Ctx) -> int:
    return _emit(ctx, "status", ctx.admin.call("Status", admin_pb2.StatusRequest()), render.status)


def _hosts(ctx: Ctx) -> int:
    request = admin_pb2.ListHostsRequest(availability_zone=ctx.args.az or "")
    return _emit(ctx, "hosts", _listing(ctx, "ListHosts", request, "hosts"), render.hosts)


def _vms_request(args: argparse.Namespace) -> admin_pb2.ListVmsRequest:
    return admin_pb2.ListVmsRequest(
        host=args.host or "",
        availability_zone=args.az or "",
        role=args.role or "",
        sort_by=args.sort,
        limit=args.limit,
    )


def _vms(ctx: Ctx) -> int:
    return _emit(ctx, "vms", _listing(ctx, "ListVms", _vms_request(ctx.args), "vms"), render.vms)


def _migrations(ctx: Ctx) -> int:
    request = admin_pb2.ListMigrationsRequest(running_only=ctx.args.running, limit=ctx.args.limit)
    response = _listing(ctx, "ListMigrations", request, "migrations")
    return _emit(ctx, "migrations", response, render.migrations)


def _plan(ctx: Ctx) -> int:
    return _emit(ctx, "plan", ctx.admin.call("PreviewPlan", admin_pb2.PreviewPlanRequest()),
                 render.plan)  # fmt: skip


def _explain(ctx: Ctx) -> int:
    response = ctx.admin.call("Explain", admin_pb2.ExplainRequest(vm=ctx.args.vm))
    return _emit(ctx, "explain", response, render.explain)


def _migrate(ctx: Ctx) -> int:
    request = admin_pb2.MigrateRequest(vm=ctx.args.vm, target_host=ctx.args.to or "",
                                       force=ctx.args.force)  # fmt: skip
    response = ctx.admin.call("Migrate", request)
    return _emit(
        ctx, "migrate", response, lambda r: f"{r.message} → {r.target} (id {r.migration_id})"
    )


def _pause(ctx: Ctx) -> int:
    request = admin_pb2.PauseRequest(reason=ctx.args.reason or "", who=_operator())
    response = ctx.admin.call("Pause", request)
    return _emit(ctx, "pause", response, lambda r: "paused: no new migration will start")


def _operator() -> str:
    """Who paused, for `coordctl status` on every replica and after restarts."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's random uid)
        user = "uid-" + str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _resume(ctx: Ctx) -> int:
    response = ctx.admin.call("Resume", admin_pb2.ResumeRequest())
    return _emit(ctx, "resume", response, lambda r: "resumed: the coordinator may act again")


def _watch_frame(ctx: Ctx) -> RenderableType:
    args = ctx.args
    vms_request = admin_pb2.ListVmsRequest(
        sort_by=args.sort, limit=args.limit, host=args.host or "", availability_zone=args.az or ""
    )
    return render.watch(
        ctx.admin.call("Status", admin_pb2.StatusRequest()),
        _listing(ctx, "ListVms", vms_request, "vms"),
        _listing(ctx, "ListMigrations", admin_pb2.ListMigrationsRequest(running_only=True),
                 "migrations"),
    )  # fmt: skip


def _watch(ctx: Ctx) -> int:
    """Redraw until Ctrl-C (or --count frames); an unreachable coordinator ends it."""
    if ctx.args.json:
        raise CtlError(
            "watch is for people; for machines, run `coordctl status --json` in a loop "
            "(and `coordctl vms --json`, `coordctl migrations --running --json`)",
            Exit.USAGE,
        )
    frames = 0
    with Live(_watch_frame(ctx), console=ctx.console, auto_refresh=False, screen=False) as live:
        while not ctx.args.count or frames < ctx.args.count - 1:
            time.sleep(ctx.args.interval)
            live.update(_watch_frame(ctx), refresh=True)
            frames += 1
    return Exit.OK


def _count(text: str) -> int:
    """A --limit/--count/--page-size: a whole number, 0 or more (argparse says which flag)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and {2**32 - 1}")
    return value


def _seconds(text: str) -> float:
    """A --timeout/--interval: finite and positive (nan, inf, 0 and negatives are not)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0 or value > 86400:
        raise argparse.ArgumentTypeError(f"{text!r}: give seconds, above 0 and at most 86400")
    return value


def _add_paging(parser: argparse.ArgumentParser, default_limit: int) -> None:
    add = parser.add_argument
    add("--limit", type=_count, default=default_limit,
        help="at most this many, fetched page by page (0 = all)")  # fmt: skip
    add("--page-size", type=_count, default=0,
        help="fetch one page of this size only; its next page token is printed")  # fmt: skip
    add("--page-token", default="", help="continue a listing from this token")


def _add_vm_filters(parser: argparse.ArgumentParser, default_limit: int) -> None:
    parser.add_argument("--host", help="only VMs on this hypervisor")
    parser.add_argument("--az", help="only this availability zone")
    parser.add_argument("--sort", choices=["steal", "load", "name"], default="steal")
    _add_paging(parser, default_limit)


def _commands(sub: argparse._SubParsersAction[_Parser]) -> dict[str, Command]:
    # Every subcommand also takes the global flags, so `coordctl status --json` works
    # as well as `coordctl --json status`.
    parent = _global_flags(_Parser(add_help=False), argparse.SUPPRESS)
    add = functools.partial(sub.add_parser, parents=[parent])
    add("status", help="cluster summary")
    hosts = add("hosts", help="per-hypervisor steal, demand and agent freshness")
    hosts.add_argument("--az", help="only this availability zone")
    _add_paging(hosts, default_limit=0)
    vms = add("vms", help="VMs by steal or load")
    _add_vm_filters(vms, default_limit=0)
    vms.add_argument("--role", help="only VMs with this role")
    migrations = add("migrations", help="running migrations and history")
    migrations.add_argument("--running", action="store_true", help="only those in flight")
    _add_paging(migrations, default_limit=50)
    add("plan", help="dry run: what would move now, and why")
    add("explain", help="why a VM would or would not move").add_argument("vm", help="UUID or name")
    migrate = add("migrate", help="migrate a VM now (same safety checks)")
    migrate.add_argument("vm", help="UUID or name")
    migrate.add_argument("--to", metavar="HOST", help="target hypervisor (default: policy's)")
    migrate.add_argument("--force", action="store_true",
                         help="start it even while the coordinator is paused")  # fmt: skip
    add("pause", help="start no new migration").add_argument("--reason")
    add("resume", help="let the coordinator act again")
    watch = add("watch", help="a refreshing view (Ctrl-C to quit)")
    _add_vm_filters(watch, default_limit=15)
    watch.add_argument("--interval", type=_seconds, default=2.0, help="seconds between redraws")
    watch.add_argument("--count", type=_count, default=0, help="stop after N frames (0 = never)")
    return {
        "status": _status, "hosts": _hosts, "vms": _vms, "migrations": _migrations,
        "plan": _plan, "explain": _explain, "migrate": _migrate, "pause": _pause,
        "resume": _resume, "watch": _watch,
    }  # fmt: skip


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (prog: message), exit code 2."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.partition(" ")[2]  # "coordctl vms" for a subcommand's parser
        where = f"{command}: " if command else ""
        self.exit(Exit.USAGE, f"coordctl: {where}{escape(message)} (see --help)\n")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Command]]:
    parser = _Parser(
        prog="coordctl",
        description="Read and steer a running stealbalancer coordinator.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _global_flags(parser, None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    return parser, _commands(sub)


def _global_flags(parser: _Parser, default: Any) -> _Parser:
    """The flags every command takes, before or after its name. The subcommands' copies
    default to argparse.SUPPRESS: a flag not given after the name leaves the value the
    main parser set (given before it, or its default) in place."""
    add = parser.add_argument
    add("--address", default=default, help="coordinator admin API, HOST:PORT")
    add("--config", type=Path, default=default, help="coordctl config file (YAML)")
    add("--token-file", default=default, help="file holding the admin bearer token")
    add("--ca", dest="ca_file", default=default, help="CA bundle: use TLS")
    add("--cert", dest="cert_file", default=default, help="client certificate (mTLS)")
    add("--key", dest="key_file", default=default, help="client key (mTLS)")
    add("--timeout", dest="timeout_s", type=_seconds, default=default, help="per call, seconds")
    store_true = {"action": "store_true"} | ({} if default is None else {"default": default})
    add("--json", **store_true, help="machine-readable output")
    add("--no-color", **store_true, help="never colour")
    return parser


def _console(args: argparse.Namespace) -> Console:
    # Rich already honours NO_COLOR and a dumb/non-tty stdout; --no-color forces it.
    # Piped output is not cut to 80 columns: it goes to a file or a pager.
    probe = Console()
    width = None if probe.is_terminal else 160
    return Console(no_color=args.no_color or None, highlight=False, width=width)


def run(argv: list[str] | None = None) -> int:
    parser, commands = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    try:
        admin = Admin(resolve(vars(args), os.environ, args.config))
    except ConfigError as exc:
        return _fail(str(exc), Exit.USAGE)
    try:
        return commands[args.command](Ctx(admin, args, _console(args)))
    except CtlError as exc:
        return _fail(str(exc), exc.code)
    except KeyboardInterrupt:
        return Exit.OK if args.command == "watch" else 130
    finally:
        admin.close()


def _fail(message: str, code: Exit) -> int:
    print(f"coordctl: {escape(message)}", file=sys.stderr)
    return int(code)


def main() -> None:
    raise SystemExit(run())
