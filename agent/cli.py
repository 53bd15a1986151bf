"""`stealbalancer-agent`: the hypervisor daemon, or one measurement with `--once`.

stealbalancer-agent --config /etc/stealbalancer/agent.yaml
stealbalancer-agent --once --json              # per-VM steal over one second
stealbalancer-agent --once --libvirt-uri qemu:///system --steal-source schedstat
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import structlog

from agent.collector import Collector
from agent.commands import CommandExecutor
from agent.config import AgentConfig, ConfigError, load_agent_config
from agent.daemon import AgentDaemon
from agent.errors import AgentError
from agent.metrics import AgentMetrics
from agent.sampling import VmSteal, steal_table
from agent.sources.base import DomainSource, HostSource
from agent.sources.procfs import ProcFs
from agent.sources.sim import SimHost, SimVm
from agent.stream import AgentStream, Backoff, ReportBuffer, Tls
from agent.wire import register_message

_FLAG_KEYS = {
    "coordinator": "coordinator.address",
    "plaintext": "coordinator.plaintext",
    "interval": "interval_s",
    "host": "host",
    "libvirt_uri": "libvirt.uri",
    "steal_source": "libvirt.steal_source",
    "metrics_port": "metrics.port",
    "source": "source",
    "procfs_root": "procfs_root",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging(args.log_level)
    try:
        config = load_agent_config(args.config, _overrides(args))
        if args.once:
            return _once(config, args.once_interval, args.json)
        return asyncio.run(_serve(config))
    except ConfigError as exc:
        print(f"stealbalancer-agent: config error: {exc}", file=sys.stderr)
        return 2
    except AgentError as exc:
        print(f"stealbalancer-agent: {exc}", file=sys.stderr)
        return 1


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _interval(text: str) -> float:
    """--once-interval: seconds, finite, above 0 and at most an hour."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and 0 < value <= 3600):
        raise argparse.ArgumentTypeError(f"{text!r}: give seconds above 0, at most 3600")
    return value


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="stealbalancer-agent", description=__doc__.split("\n")[0])
    p.add_argument("--config", type=Path, help="YAML config file (see agent.yaml)")
    p.add_argument("--coordinator", help="coordinator address host:port")
    p.add_argument("--plaintext", action="store_true", default=None, help="no TLS (explicit)")
    p.add_argument("--interval", type=float, help="seconds between reports")
    p.add_argument("--host", help="hypervisor name as Nova knows it")
    p.add_argument("--libvirt-uri")
    p.add_argument("--steal-source", help="auto | libvirt | schedstat")
    p.add_argument("--metrics-port", type=int, help="Prometheus port, 0 = off")
    p.add_argument("--source", help="libvirt | sim")
    p.add_argument("--procfs-root", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--once", action="store_true", help="measure once, print, exit")
    p.add_argument("--json", action="store_true", help="with --once: JSON on stdout")
    p.add_argument("--once-interval", type=_interval, default=1.0,
                   help="seconds between readings")  # fmt: skip
    p.add_argument("--log-level", default="info")
    return p


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values = {key: getattr(args, flag) for flag, key in _FLAG_KEYS.items()}
    found = {key: value for key, value in values.items() if value is not None}
    return {k: str(v) if isinstance(v, Path) else v for k, v in found.items()}


def _configure_logging(level: str) -> None:
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(
            numeric if isinstance(numeric, int) else logging.INFO
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )


def build_sources(config: AgentConfig) -> tuple[DomainSource, HostSource]:
    """The configured sources; libvirt is imported only when it is used."""
    if config.source == "sim":
        vms = [SimVm(**vm.model_dump()) for vm in config.sim_vms]
        sim = SimHost(config.host, vms)
        return sim, sim
    from agent.sources.libvirt import LibvirtSource, StealMode

    procfs = ProcFs(config.procfs_root)
    mode = StealMode(config.libvirt.steal_source)
    return LibvirtSource(config.libvirt.uri, mode, procfs), procfs


def _once(config: AgentConfig, interval_s: float, as_json: bool) -> int:
    domains, host = build_sources(config)
    collector = Collector(domains, host)
    try:
        first = collector.collect()
        time.sleep(max(0.0, interval_s))
        second = collector.collect()
    finally:
        domains.close()
    rows = steal_table(first.domains, second.domains, second.monotonic_ns - first.monotonic_ns)
    print(_render(config.host, rows, as_json))
    return 0


def _render(host: str, rows: list[VmSteal], as_json: bool) -> str:
    if as_json:
        return json.dumps({"host": host, "vms": [row.as_dict() for row in rows]}, indent=2)
    lines = [f"{'VM':<36} {'vCPU':>4} {'steal':>7} {'busy':>7}  source"]
    for row in rows:
        lines.append(
            f"{row.name:<36} {row.vcpus:>4} {row.steal:>7.1%} {row.busy:>7.1%}  "
            f"{row.steal_origin.value}"
        )
    return "\n".join(lines)


def build_daemon(config: AgentConfig, metrics: AgentMetrics | None = None) -> AgentDaemon:
    if config.coordinator is None:
        raise ConfigError("coordinator: required unless --once (set coordinator.address)")
    metrics = metrics or AgentMetrics()
    domains, host = build_sources(config)
    executor = CommandExecutor(domains)
    buffer = ReportBuffer(config.buffer_reports)
    section = config.coordinator
    tls = None
    if not section.plaintext and section.ca and section.cert and section.key:
        tls = Tls(section.ca, section.cert, section.key, section.server_name)
    interval = max(1, round(config.interval_s))

    def register() -> Any:
        return register_message(
            config.host, config.availability_zone, host.host(), interval, host.boot_id()
        )

    backoff = Backoff(config.reconnect.initial_s, config.reconnect.max_s)
    stream = AgentStream(section.address, tls, register, executor, buffer, metrics, backoff)
    return AgentDaemon(
        Collector(domains, host), executor, stream, buffer, metrics, config.interval_s
    )


def _serve_metrics(metrics: AgentMetrics, config: AgentConfig) -> None:
    """Open /metrics, or say in one line why not (a port in use, an unknown address)."""
    where = f"{config.metrics.address}:{config.metrics.port}"
    try:
        metrics.serve(config.metrics.port, config.metrics.address)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise AgentError(
            f"metrics.address:port {where}: cannot listen ({reason}); "
            "choose another metrics.port (0 turns /metrics off)"
        ) from exc


async def _serve(config: AgentConfig) -> int:
    metrics = AgentMetrics()
    daemon = build_daemon(config, metrics)
    if config.metrics.port:
        _serve_metrics(metrics, config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    structlog.get_logger("agent").info("agent started", host=config.host)
    try:
        await daemon.run(stop)
    finally:
        daemon.collector.domain_source.close()
    return 0
