"""Failover benchmark: how long the coordinator is headless when its leader dies.

    python -m tests.benchmarks.bench_failover [--trials 3] [--lease 15] [--renew 10] [--retry 2]

Two real `serve` replicas share a journal on the MariaDB test server and a Lease on the
Kubernetes API double, with the real Nova fixture behind them (tests/setup); 4 agents
stream through a readiness-gated Service (tests/service/failover.py) and reconnect with
the real agent's backoff (agent.config ReconnectSection defaults, with jitter).
Each trial kills the leader with SIGKILL and measures, from the kill: the survivor
Ready (it holds the Lease: it acts, and the Services route to it) and every agent
streaming to it again. Baseline in the same run: a clean shutdown (SIGTERM), where the
leader hands the Lease back at once. Lease timings default to the configuration's.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import tempfile
import time
from pathlib import Path

from agent.config import ReconnectSection
from agent.stream import Backoff
from tests.detach.conftest import write_kubeconfig
from tests.doubles.kube_apiserver import KubeApiServer
from tests.journal.servers import PASSWORD, fresh_database, server_url
from tests.service.cloud import HOSTS, NovaProcess
from tests.service.failover import Fleet, ReadyRouter, Replica


async def _until(fleet: Fleet, check: object, timeout_s: float) -> float:
    """Keep the agents reporting until `check()`; seconds it took."""
    started = time.monotonic()
    while not check():  # type: ignore[operator]  # a predicate
        if time.monotonic() - started > timeout_s:
            raise TimeoutError("no takeover")
        await fleet.round(1.0)
        await asyncio.sleep(0.2)
    return time.monotonic() - started


async def trial(
    replicas: list[Replica], fleet: Fleet, how: signal.Signals, env: dict[str, str]
) -> tuple[float, float]:
    leader = next(r for r in replicas if r.ready())
    survivor = next(r for r in replicas if r is not leader)
    assert leader.proc is not None
    leader.proc.send_signal(how)
    killed = time.monotonic()
    await asyncio.to_thread(leader.proc.wait, 30)
    ready = await _until(fleet, survivor.ready, 120)
    await _until(fleet, lambda: fleet.streaming == len(HOSTS), 180)
    streaming = time.monotonic() - killed
    leader.start(env)  # back as the follower for the next trial
    await _until(fleet, lambda: _http_up(leader), 60)
    return ready, streaming


def _http_up(replica: Replica) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{replica.metrics_port}/metrics", timeout=1):
            return True
    except OSError:
        return False


async def run(args: argparse.Namespace, scratch: Path, nova: NovaProcess, url: str) -> None:
    kube = KubeApiServer()
    with kube.serve() as kube_url:
        settings = {
            "service": {"journal_url": url, "plan_interval_s": 1.0, "inventory_interval_s": 5.0},
            "nova": {"compute_endpoint_override": nova.endpoint},
            "kubernetes": {"clusters": {"default": {
                "kubeconfig": str(write_kubeconfig(scratch / "kc", kube_url, "t"))}}},
            "leader": {"enabled": True, "lease_duration_s": args.lease,
                       "renew_deadline_s": args.renew, "retry_period_s": args.retry},
        }  # fmt: skip
        replicas = [Replica(f"replica-{n}", scratch, settings) for n in "ab"]
        agents = ReadyRouter(replicas, "agent_port")
        reconnect = ReconnectSection()
        fleet = Fleet(agents.address, HOSTS, Backoff(reconnect.initial_s, reconnect.max_s))
        env = {"STEALBALANCER_JOURNAL_PASSWORD": PASSWORD}
        try:
            replicas[0].start(env)
            await _until(fleet, replicas[0].ready, 120)
            replicas[1].start(env)
            await _until(
                fleet, lambda: fleet.streaming == len(HOSTS) and _http_up(replicas[1]), 120
            )
            results: dict[str, list[tuple[float, float]]] = {"SIGTERM": [], "SIGKILL": []}
            for _ in range(args.trials):
                for how in (signal.SIGTERM, signal.SIGKILL):
                    results[how.name].append(await trial(replicas, fleet, how, env))
        finally:
            await fleet.close()
            for replica in replicas:
                replica.stop()
            agents.close()
    print(f"Lease {args.lease:g} s, renew deadline {args.renew:g} s, retry {args.retry:g} s; "
          f"{len(HOSTS)} agents; {args.trials} trials each (median, max):")  # fmt: skip
    base = statistics.median(s for _, s in results["SIGTERM"])
    for name, rows in results.items():
        ready = [r for r, _ in rows]
        streaming = [s for _, s in rows]
        what = "clean shutdown (baseline)" if name == "SIGTERM" else "leader SIGKILLed"
        print(f"  {what:<26} survivor Ready {statistics.median(ready):5.1f} s "
              f"(max {max(ready):5.1f}); every agent streaming to it "
              f"{statistics.median(streaming):5.1f} s (max {max(streaming):5.1f}; "
              f"{statistics.median(streaming) / base:.1f}x baseline)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--lease", type=float, default=15.0)
    parser.add_argument("--renew", type=float, default=10.0)
    parser.add_argument("--retry", type=float, default=2.0)
    args = parser.parse_args()
    nova = NovaProcess()
    try:
        with tempfile.TemporaryDirectory() as scratch, fresh_database("mariadb") as name:
            url = server_url("mariadb", name).render_as_string()
            asyncio.run(run(args, Path(scratch), nova, url))
    finally:
        nova.stop()


if __name__ == "__main__":
    main()
