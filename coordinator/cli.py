"""`stealbalancer-coordinator`: the coordinator's command line.

    stealbalancer-coordinator simulate [--scenario FILE|NAME] [--policy P ...] ...

Subcommands register themselves in `_SUBCOMMANDS`; each gets an argparse
subparser and a handler returning the process exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, cast

from coordinator.config import ConfigError, load_config

EXIT_OK = 0
EXIT_BAD_INPUT = 2

Handler = Callable[[argparse.Namespace], int]


def _add_simulate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> Handler:
    parser = sub.add_parser(
        "simulate",
        help="run a simulated day, no balancing vs balancing, through the real policy",
        description="Run a simulated day (the built-in reference day by default: 80 "
        "hypervisors, 1,000 VMs, 2 AZs) twice, without and with balancing, and print "
        "the comparison; writes a PNG plot and the results as JSON.",
    )
    parser.add_argument(
        "--scenario",
        help="scenario file (YAML/JSON) or a library name: reference, mixed-hosts, hot-az, "
        "overloaded-az, placement-waves, local-disks",
    )
    parser.add_argument(
        "--policy",
        action="append",
        choices=("stealbalancer", "naive", "none"),
        help="policy to run beside no balancing; repeat to compare several side by side "
        "(default: stealbalancer)",
    )
    parser.add_argument(
        "--config", type=Path, help="coordinator config file; overrides the scenario's config"
    )
    parser.add_argument(
        "--replay",
        type=Path,
        help="replay a recording of real agent reports (service.record_reports) through "
        "the policy (the first --policy) instead of simulating a day",
    )
    parser.add_argument("--seed", type=int, help="override the scenario's seed")
    parser.add_argument("--hours", type=float, help="simulate only this many hours")
    parser.add_argument(
        "--out", type=Path, default=Path("out"), help="where to write simulation.{png,json}"
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return _run_simulate


def _run_simulate(args: argparse.Namespace) -> int:
    import logging

    import structlog

    from coordinator.sim.main import SimulateOptions, simulate

    # The controller logs every step of every migration; a simulated day's thousands of
    # them would bury the table. Its errors still show.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    return simulate(
        SimulateOptions(
            scenario=args.scenario,
            config=load_config(args.config) if args.config else None,
            seed=args.seed,
            hours=args.hours,
            out=args.out,
            plot=not args.no_plot,
            progress=not args.quiet,
            policies=tuple(args.policy or ("stealbalancer",)),
            replay=args.replay,
        )
    )


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> Handler:
    from coordinator.service.main import add_serve

    return add_serve(sub)


_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], Handler]] = [
    _add_simulate,
    _add_serve,
]


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: {message} (see --help)\n")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    parser = _Parser(
        prog="stealbalancer-coordinator",
        description="Keeps OpenStack VMs out of CPU contention.",
    )
    # Subcommand parsers are _Parser too (argparse uses the parent's class); the
    # registration functions only need the ArgumentParser interface.
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", required=True, metavar="COMMAND"),
    )
    handlers: dict[str, Handler] = {}
    for register in _SUBCOMMANDS:
        before = set(sub.choices)
        handler = register(sub)
        for name in set(sub.choices) - before:
            handlers[name] = handler
    return parser, handlers


def main(argv: list[str] | None = None) -> int:
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    raise SystemExit(main())
