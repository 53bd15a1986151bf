"""`stealbalancer-coordinator serve --config FILE`: wiring and the run loop.

Start-up checks every setting first (one line, exit 2, naming the key), opens the
journal and checks it reads and writes, then listens. Migrations a previous process
left open need no recovery step: the controller's first tick re-enters them.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog

from coordinator.adapters.az_scope import scoped
from coordinator.adapters.none import NoDetacher
from coordinator.adapters.orchestrators import detachers_for
from coordinator.api.v1 import admin_pb2_grpc, agent_pb2_grpc
from coordinator.config import (
    Config,
    ConfigError,
    ServiceConfig,
    TlsConfig,
    detection_warnings,
    load_config,
)
from coordinator.controller import Clock, SystemClock
from coordinator.errors import ComputeError, StealbalancerError
from coordinator.journal import Journal, JournalError
from coordinator.leader import Leadership, leadership_for
from coordinator.model import Orchestrator
from coordinator.policy.limits import limit_warnings
from coordinator.ports import Compute, Detacher
from coordinator.service.admin import AdminService
from coordinator.service.core import Coordinator
from coordinator.service.endpoints import Readiness, start_endpoints
from coordinator.service.logs import configure_logging
from coordinator.service.metrics import Metrics
from coordinator.service.preflight import (
    check_record_reports,
    check_tls,
    journal_problem,
    listen_address,
    open_journal,
)

log = structlog.get_logger("stealbalancer.serve")


@dataclass
class Running:
    coordinator: Coordinator
    agent_server: grpc.aio.Server
    admin_server: grpc.aio.Server
    agent_port: int
    admin_port: int
    tasks: list[asyncio.Task[None]]
    admin: AdminService

    async def stop(self) -> bool:
        """Stop serving and acting; True when no tick is still acting (the lease may
        then be handed over at once)."""
        for task in self.tasks:
            task.cancel()
        await self.agent_server.stop(grace=1)
        await self.admin_server.stop(grace=1)
        self.admin.close()
        return await self.coordinator.drain(timeout_s=5)


def _credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    key, cert = Path(tls.key_file).read_bytes(), Path(tls.cert_file).read_bytes()
    ca = Path(tls.ca_file).read_bytes() if tls.ca_file else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                       require_client_auth=ca is not None)  # fmt: skip


# A hard-rebooted hypervisor never closes its stream: pings find the dead peer within
# about KEEPALIVE_TIME + KEEPALIVE_TIMEOUT (30 s) instead of TCP's two hours. Agents ping
# at the same period (agent/stream.py); the server must permit pings that often.
KEEPALIVE_TIME_MS = 20_000
KEEPALIVE_TIMEOUT_MS = 10_000
MIN_CLIENT_PING_INTERVAL_MS = 10_000


def _grpc_server(config: Config) -> grpc.aio.Server:
    size = config.service.max_message_bytes
    return grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", size),
            ("grpc.max_send_message_length", size),
            # Off: with SO_REUSEPORT a second coordinator on the same port starts fine
            # and the kernel splits the agents and coordctl between the two.
            ("grpc.so_reuseport", 0),
            ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
            ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.http2.min_ping_interval_without_data_ms", MIN_CLIENT_PING_INTERVAL_MS),
        ]
    )


async def start(
    config: Config,
    compute: Compute,
    detachers: Mapping[str, Detacher] | None = None,
    clock: Clock | None = None,
    journal: Journal | None = None,
    metrics: Metrics | None = None,
    leadership: Leadership | None = None,
) -> Running:
    """Start the servers and the loops; returns once everything listens."""
    for problem in limit_warnings(config.limits):
        log.warning("limits too tight", problem=problem)
    for problem in detection_warnings(config.policy):
        log.warning("detection impossible", problem=problem)
    check_record_reports(config.service.record_reports)
    journal = journal or configured_journal(config.service)
    compute = scoped(compute, config.service.azs)  # a coordinator per AZ group sees only it
    detachers = detachers or {Orchestrator.NONE.value: NoDetacher()}
    coordinator = Coordinator(
        config, compute, journal, detachers, clock or SystemClock(), metrics, leadership
    )
    coordinator.agents.bind_loop(asyncio.get_running_loop())
    agent_server, admin_server = _grpc_server(config), _grpc_server(config)
    agent_pb2_grpc.add_AgentLinkServicer_to_server(coordinator.agents, agent_server)
    admin = AdminService(coordinator)
    admin_pb2_grpc.add_AdminServicer_to_server(admin, admin_server)
    svc = config.service
    agent_port = _listen(agent_server, "service.agent_listen", svc.agent_listen, "service.tls",
                         svc.tls)  # fmt: skip
    admin_port = _listen(admin_server, "service.admin_listen", svc.admin_listen,
                         "service.admin_tls", svc.admin_tls)  # fmt: skip
    _warn_if_open(config)
    await admin_server.start()
    coordinator.apply_start_paused()
    # Agents are refused until Nova's inventory has loaded once (a host name cannot be
    # checked before): load it before their port opens, so a fleet reconnecting to a
    # restarted coordinator is not turned away once for nothing.
    await coordinator.refresh_inventory()
    await agent_server.start()
    # Open migrations are followed every poll; a planning round runs every plan interval.
    step_s = min(config.workflow.poll_s, svc.plan_interval_s)
    tasks = [
        asyncio.ensure_future(_every(svc.inventory_interval_s, coordinator.refresh_inventory)),
        asyncio.ensure_future(_every(step_s, coordinator.loop_step)),
    ]
    log.info("coordinator listening", agent_port=agent_port, admin_port=admin_port)
    return Running(coordinator, agent_server, admin_server, agent_port, admin_port, tasks, admin)


def _listen(
    server: grpc.aio.Server, key: str, address: str, tls_key: str, tls: TlsConfig | None
) -> int:
    """Bind `address`; grpc only says "Failed to bind", so name the key and the likely why."""
    listen_address(key, address)
    check_tls(tls_key, tls)
    try:
        if tls is not None:
            return server.add_secure_port(address, _credentials(tls))
        return server.add_insecure_port(address)
    except RuntimeError:
        raise ConfigError(f"{key}: cannot listen on {address} (in use, or not an address "
                          "of this machine)") from None  # fmt: skip


def configured_journal(service: ServiceConfig) -> Journal:
    """The shared database journal when `journal_url` is set, else the SQLite file."""
    if not service.journal_url:
        return open_journal(service.journal_path)
    try:
        password = journal_password(service)
    except JournalError as exc:
        raise ConfigError(str(exc)) from None
    return open_journal(service.journal_url, password=password)


def journal_password(service: ServiceConfig) -> str:
    """From the environment or a file (a mounted Secret), never the config or argv."""
    password = os.environ.get("STEALBALANCER_JOURNAL_PASSWORD", "")
    if password or not service.journal_password_file:
        return password
    try:
        # A Secret created with --from-file keeps the file's trailing newline.
        return Path(service.journal_password_file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise JournalError(
            f"service.journal_password_file {service.journal_password_file}: {exc.strerror}"
        ) from None


async def _every(interval_s: float, step: object) -> None:
    assert callable(step)
    while True:
        await asyncio.sleep(interval_s)
        try:
            await step()
        except Exception:  # one failed round must not stop the loop
            log.exception("periodic step failed", step=getattr(step, "__name__", "?"))


def _compute(config: Config) -> Compute:
    from coordinator.adapters.nova import NovaCompute

    nova = config.nova
    if nova.compute_endpoint_override and nova.cloud is None:
        return NovaCompute.connect(
            None,
            nova.timeout_s,
            auth_type="none",
            compute_endpoint_override=nova.compute_endpoint_override,
        )
    return NovaCompute.connect(nova.cloud, nova.timeout_s)


def readiness_of(running: Running) -> Callable[[], str]:
    """The /readyz check of a started service: only the leader is Ready (the Service then
    sends every agent stream and admin call to the replica that acts), and only while its
    journal reads and takes a write."""
    coordinator = running.coordinator

    def problem() -> str:
        if not coordinator.leadership.is_leader():
            return "follower: not the leader"
        return journal_problem(coordinator.journal)

    return problem


async def _serve(config: Config) -> int:
    metrics = Metrics()
    readiness = Readiness()
    if config.service.metrics_listen:
        start_endpoints(config.service.metrics_listen, metrics.registry, readiness)
    try:
        compute = _compute(config)
    except ComputeError as exc:
        log.error("cannot reach Nova", error=str(exc))
        return 1
    try:
        leadership = leadership_for(config)
    except (ValueError, StealbalancerError) as exc:  # no such cluster, bad kubeconfig
        raise ConfigError(f"leader: {exc}") from None
    released = threading.Event()
    elector = threading.Thread(
        target=leadership.run, args=(released,), name="leader-election", daemon=True
    )
    elector.start()
    try:
        detachers = detachers_for(config)
    except (ValueError, StealbalancerError) as exc:  # e.g. a kubeconfig that is not one
        raise ConfigError(f"kubernetes: {exc}") from None
    running = await start(config, compute, detachers, metrics=metrics, leadership=leadership)
    readiness.check = readiness_of(running)
    print(f"LISTENING agent={running.agent_port} admin={running.admin_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if await running.stop():
        released.set()  # a clean shutdown releases the lease for the other replica
    else:  # a tick still acts: the lease must run out, not be handed over under it
        log.warning("a tick is still running at shutdown: leaving the lease to expire")
    await asyncio.to_thread(elector.join, 5.0)
    return 0


def serve(config: Config) -> int:
    return asyncio.run(_serve(config))


def add_serve(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> Callable[[argparse.Namespace], int]:
    """Register `serve` on the coordinator's command line (coordinator/cli.py)."""
    parser = sub.add_parser(
        "serve",
        help="run the coordinator: agent and admin gRPC, metrics, control loop",
        description="Run the coordinator service until SIGTERM/SIGINT.",
    )
    parser.add_argument(
        "--config", type=Path, help="config file (YAML/JSON); required unless --simulate"
    )
    from coordinator.service.simulated import add_arguments

    add_arguments(parser)
    return _run_serve


def _run_serve(args: argparse.Namespace) -> int:
    configure_logging()
    if args.simulate:
        from coordinator.service.simulated import serve_simulated

        return serve_simulated(args)
    if args.config is None:
        raise ConfigError("serve: --config FILE is required (or --simulate)")
    config = with_env_token(load_config(args.config))
    check_exposure(config)
    return serve(config)


def with_env_token(config: Config) -> Config:
    """STEALBALANCER_ADMIN_TOKEN overrides service.admin_token, so the token can come
    from a Kubernetes Secret while the rest of the config is a ConfigMap. Set but empty
    is an error: it must not silently turn authentication off."""
    raw = os.environ.get("STEALBALANCER_ADMIN_TOKEN")
    if raw is None:
        return config
    token = raw.strip()  # a Secret made from a file keeps the file's newline
    if not token:
        raise ConfigError("STEALBALANCER_ADMIN_TOKEN is set but empty: set a token or unset it")
    service = config.service.model_copy(update={"admin_token": token})
    return config.model_copy(update={"service": service})


def check_exposure(config: Config) -> None:
    """Refuse an admin API anyone on the network could drive: on a non-loopback address
    it needs a token or client certificates, unless service.admin_insecure says so."""
    svc = config.service
    # A malformed address first: "localhost" (no port) is not host:port, and its
    # "reachable from the network" would send the operator after the wrong fix.
    listen_address("service.admin_listen", svc.admin_listen)
    mtls = svc.admin_tls is not None and bool(svc.admin_tls.ca_file)
    if svc.admin_token or mtls or svc.admin_insecure or is_loopback(svc.admin_listen):
        return
    raise ConfigError(
        f"service.admin_listen: {svc.admin_listen} is reachable from the network but the "
        "admin API has no token (service.admin_token / STEALBALANCER_ADMIN_TOKEN) and no "
        "client certificates (service.admin_tls.ca_file); set one, or service.admin_insecure"
    )


def is_loopback(listen: str) -> bool:
    """Whether a host:port listen address is reachable from this machine only."""
    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost, or empty (every address)


def _warn_if_open(config: Config) -> None:
    svc = config.service
    if svc.tls is None or not svc.tls.ca_file:
        log.warning(
            "INSECURE: agent port without mTLS (service.tls.ca_file): any client that "
            "reaches it can register as any hypervisor and report its telemetry",
            agent_listen=svc.agent_listen,
        )
    if not svc.admin_token and (svc.admin_tls is None or not svc.admin_tls.ca_file):
        log.warning("INSECURE: admin API without token or client certificates",
                    admin_listen=svc.admin_listen)  # fmt: skip
