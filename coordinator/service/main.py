"""`stealbalancer-coordinator serve --config FILE`: wiring and the run loop.

Start-up order matters for crash safety: the journal is opened and every migration a
previous process left open is recovered *before* the first planning round, so the
planner sees them in flight and never starts a second migration of the same VM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog
from prometheus_client import start_http_server

from coordinator.adapters.none import NoDetacher
from coordinator.adapters.orchestrators import detachers_for
from coordinator.api.v1 import admin_pb2_grpc, agent_pb2_grpc
from coordinator.config import Config, TlsConfig, load_config
from coordinator.errors import ComputeError
from coordinator.journal import Journal
from coordinator.leader import Leadership, leadership_for
from coordinator.model import Orchestrator
from coordinator.policy.limits import limit_warnings
from coordinator.ports import Compute, Detacher
from coordinator.service.admin import AdminService
from coordinator.service.core import Coordinator
from coordinator.service.metrics import Metrics
from coordinator.workflow import Clock, SystemClock

log = structlog.get_logger("stealbalancer.serve")


@dataclass
class Running:
    coordinator: Coordinator
    agent_server: grpc.aio.Server
    admin_server: grpc.aio.Server
    agent_port: int
    admin_port: int
    tasks: list[asyncio.Task[None]]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.agent_server.stop(grace=1)
        await self.admin_server.stop(grace=1)
        await self.coordinator.drain(timeout_s=5)


def _credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    key, cert = Path(tls.key_file).read_bytes(), Path(tls.cert_file).read_bytes()
    ca = Path(tls.ca_file).read_bytes() if tls.ca_file else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                       require_client_auth=ca is not None)  # fmt: skip


def _grpc_server(config: Config) -> grpc.aio.Server:
    size = config.service.max_message_bytes
    return grpc.aio.server(
        options=[("grpc.max_receive_message_length", size), ("grpc.max_send_message_length", size)]
    )


async def start(
    config: Config,
    compute: Compute,
    detachers: Mapping[Orchestrator, Detacher] | None = None,
    clock: Clock | None = None,
    journal: Journal | None = None,
    metrics: Metrics | None = None,
    leadership: Leadership | None = None,
) -> Running:
    """Start the servers and the loops; returns once everything listens."""
    for problem in limit_warnings(config.limits):
        log.warning("limits too tight", problem=problem)
    journal = journal or Journal(config.service.journal_path)
    detachers = detachers or {Orchestrator.NONE: NoDetacher()}
    coordinator = Coordinator(
        config, compute, journal, detachers, clock or SystemClock(), metrics, leadership
    )
    coordinator.agents.bind_loop(asyncio.get_running_loop())
    agent_server, admin_server = _grpc_server(config), _grpc_server(config)
    agent_pb2_grpc.add_AgentLinkServicer_to_server(coordinator.agents, agent_server)
    admin_pb2_grpc.add_AdminServicer_to_server(AdminService(coordinator), admin_server)
    svc = config.service
    if svc.tls is not None:
        agent_port = agent_server.add_secure_port(svc.agent_listen, _credentials(svc.tls))
    else:
        agent_port = agent_server.add_insecure_port(svc.agent_listen)
    if svc.admin_tls is not None:
        admin_port = admin_server.add_secure_port(svc.admin_listen, _credentials(svc.admin_tls))
    else:
        admin_port = admin_server.add_insecure_port(svc.admin_listen)
    await agent_server.start()
    await admin_server.start()
    await coordinator.refresh_inventory()
    if coordinator.leadership.is_leader():
        coordinator.recover()
    tasks = [
        asyncio.ensure_future(_every(svc.inventory_interval_s, coordinator.refresh_inventory)),
        asyncio.ensure_future(_every(svc.plan_interval_s, coordinator.tick)),
    ]
    log.info("coordinator listening", agent_port=agent_port, admin_port=admin_port)
    return Running(coordinator, agent_server, admin_server, agent_port, admin_port, tasks)


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
            None, auth_type="none", compute_endpoint_override=nova.compute_endpoint_override
        )
    return NovaCompute.connect(nova.cloud)


async def _serve(config: Config) -> int:
    metrics = Metrics()
    if config.service.metrics_listen:
        host, _, port = config.service.metrics_listen.rpartition(":")
        start_http_server(int(port), addr=host or "127.0.0.1", registry=metrics.registry)
    try:
        compute = _compute(config)
    except ComputeError as exc:
        log.error("cannot reach Nova", error=str(exc))
        return 1
    leadership = leadership_for(config)
    released = threading.Event()
    elector = threading.Thread(
        target=leadership.run, args=(released,), name="leader-election", daemon=True
    )
    elector.start()
    running = await start(
        config, compute, detachers_for(config), metrics=metrics, leadership=leadership
    )
    print(f"LISTENING agent={running.agent_port} admin={running.admin_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await running.stop()
    released.set()  # a clean shutdown releases the lease for the other replica
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
    processors = structlog.processors
    structlog.configure(
        processors=[
            processors.add_log_level,
            processors.TimeStamper(fmt="iso"),
            processors.KeyValueRenderer(sort_keys=True),
        ]
    )
    if args.simulate:
        from coordinator.service.simulated import serve_simulated

        return serve_simulated(args)
    if args.config is None:
        raise SystemExit("stealbalancer-coordinator serve: --config FILE is required")
    return serve(with_env_token(load_config(args.config)))


def with_env_token(config: Config) -> Config:
    """STEALBALANCER_ADMIN_TOKEN overrides service.admin_token, so the token can come
    from a Kubernetes Secret while the rest of the config is a ConfigMap."""
    token = os.environ.get("STEALBALANCER_ADMIN_TOKEN", "")
    if not token:
        return config
    service = config.service.model_copy(update={"admin_token": token})
    return config.model_copy(update={"service": service})
