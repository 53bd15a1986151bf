"""Pieces of an HA deployment on one machine, for the failover drills.

- `Replica`: a real `python -m coordinator.cli serve` process.
- `ReadyRouter`: the Kubernetes Service in front of the replicas. Like kube-proxy with
  readiness-gated endpoints, it sends a new connection to a replica whose `/readyz`
  answers 200 (only the leader does) and refuses it when none does; established
  connections stay where they are until that replica goes away.
- `Fleet`: agents that keep a stream to the Service open, reconnecting with the real
  agent's backoff (agent.stream.Backoff) when it breaks, and report every round.
- `coordctl`: the operator's CLI, through the Service.

Everything is observed from outside, the way an operator would: the journal's rows,
Nova's migrations, the Kubernetes node, the Status RPC.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

import yaml

from agent.stream import Backoff
from tests.journal.servers import pipe
from tests.service.fake_agent import FakeAgent, FakeVm

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Replica:
    """One coordinator process with its own ports and identity."""

    def __init__(self, name: str, tmp: Path, settings: Mapping[str, Any]) -> None:
        self.name = name
        self.agent_port, self.admin_port, self.metrics_port = free_port(), free_port(), free_port()
        self.log = tmp / f"{name}.log"
        self.config = tmp / f"{name}.yaml"
        config = json.loads(json.dumps(settings))  # a deep copy
        config["service"] |= {
            "agent_listen": f"127.0.0.1:{self.agent_port}",
            "admin_listen": f"127.0.0.1:{self.admin_port}",
            "metrics_listen": f"127.0.0.1:{self.metrics_port}",
        }
        config["leader"]["identity"] = name
        self.config.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, env: Mapping[str, str]) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "coordinator.cli", "serve", "--config", str(self.config)],
                stdout=out, stderr=out, env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            )  # fmt: skip

    def ready(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/readyz"
            with urllib.request.urlopen(url, timeout=1) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


class ReadyRouter:
    """A Service: one loopback port, forwarded to the Ready replica's `port_of`."""

    def __init__(self, replicas: list[Replica], port_of: str) -> None:
        self._replicas = replicas
        self._port_of = port_of
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            ready = next((r for r in self._replicas if r.alive() and r.ready()), None)
            if ready is None:
                client.close()  # no endpoints: the connection is refused
                continue
            try:
                server = socket.create_connection(("127.0.0.1", getattr(ready, self._port_of)))
            except OSError:
                client.close()
                continue
            self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for conn in self._conns:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


# The drills' agents retry quickly; bench_failover uses the real agent's defaults.
QUICK_BACKOFF = Backoff(initial_s=0.5, max_s=4.0)


class Fleet:
    """One FakeAgent per hypervisor, kept streaming to `target` like the real agent."""

    def __init__(
        self, target: str, hosts: Mapping[str, str], backoff: Backoff = QUICK_BACKOFF
    ) -> None:
        self._target = target
        self.hosts = dict(hosts)
        self.vms: dict[str, dict[str, FakeVm]] = {h: {} for h in hosts}
        self._agents: dict[str, FakeAgent] = {}
        self._attempts = dict.fromkeys(hosts, 0)
        self._next_try = dict.fromkeys(hosts, 0.0)
        self._backoff = backoff
        self.reconnects = 0

    async def round(self, dt_s: float = 1.0) -> None:
        """Reconnect whoever lost its stream (when its backoff allows), then report."""
        for host in self.hosts:
            agent = self._agents.get(host)
            if agent is not None and _stream_ended(agent):
                await agent.close()
                del self._agents[host]
                self.reconnects += 1
            if host not in self._agents and time.monotonic() >= self._next_try[host]:
                await self._connect(host)
        for host, agent in self._agents.items():
            agent.vms = self.vms[host]
            await agent.report(dt_s)

    async def _connect(self, host: str) -> None:
        agent = FakeAgent(self._target, host, self.hosts[host])
        agent.vms = self.vms[host]
        try:
            await agent.connect(timeout_s=2)
        except Exception:  # refused, reset, no endpoint: back off and try again
            await agent.close()
            self._attempts[host] += 1
            self._next_try[host] = time.monotonic() + self._backoff.delay(self._attempts[host])
            return
        self._attempts[host] = 0
        self._agents[host] = agent

    @property
    def streaming(self) -> int:
        return sum(not _stream_ended(a) for a in self._agents.values())

    async def close(self) -> None:
        for agent in self._agents.values():
            await agent.close()
        self._agents.clear()


def _stream_ended(agent: FakeAgent) -> bool:
    reader: asyncio.Task[None] | None = getattr(agent, "_reader", None)
    return reader is None or reader.done()


def coordctl(address: str, *args: str) -> dict[str, Any]:
    """`coordctl --json ARGS` through the admin Service; its JSON document."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from coordinator.ctl.cli import run; sys.exit(run())",
         "--address", address, "--json", *args],
        capture_output=True, text=True, timeout=30, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"coordctl {' '.join(args)}: {done.returncode} {done.stderr.strip()}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result
