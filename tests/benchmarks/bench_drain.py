"""How long a Kubernetes drain costs the coordinator as a node's pod count grows.

The real KubernetesDetacher and the real client against the loopback API server
double (pods terminate at once, so what is measured is the coordinator's own work:
listing pages, evicting, polling until gone). Baseline: a node with one pod,
measured in the same run.

    python -m tests.benchmarks.bench_drain
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import structlog

from coordinator.adapters.kubernetes import KubernetesDetacher
from coordinator.detach_config import KubernetesClusterConfig, KubernetesConfig
from coordinator.model import Orchestrator, Vm
from tests.doubles.kube_apiserver import KubeApiServer

TOKEN = "bench"
SIZES = (1, 10, 50, 200)
REPEATS = 3


def kubeconfig(path: Path, url: str) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: b\n"
        f"clusters: [{{name: b, cluster: {{server: '{url}'}}}}]\n"
        f"users: [{{name: u, user: {{token: {TOKEN}}}}}]\n"
        "contexts: [{name: b, context: {cluster: b, user: u}}]\n"
    )
    return path


def drain_seconds(pods: int, tmp: Path) -> float:
    kube = KubeApiServer(tokens={TOKEN}, grace_s=0.0)
    kube.add_node("n", system_uuid="u")
    for i in range(pods):
        kube.add_pod(f"p{i}", "n")
    with kube.serve() as url:
        config = KubernetesConfig(
            clusters={"b": KubernetesClusterConfig(kubeconfig=str(kubeconfig(tmp / "kc", url)))},
            poll_s=0.01,
            page_size=50,
        )
        detacher = KubernetesDetacher(config)
        vm = Vm("u", "n", "h", 1, 1, orchestrator=Orchestrator.KUBERNETES, orchestrator_ref="b/n")
        started = time.perf_counter()
        detacher.detach(vm, "m")
        elapsed = time.perf_counter() - started
        detacher.reattach(vm, "m")
    assert kube.pods_on("n") == []
    return elapsed


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    with tempfile.TemporaryDirectory() as tmp:
        drain_seconds(1, Path(tmp))  # warm-up: the client builds its models lazily
        results = {
            n: statistics.median(drain_seconds(n, Path(tmp)) for _ in range(REPEATS)) for n in SIZES
        }
    base = results[SIZES[0]]
    print(f"{'pods':>6} {'drain s':>9} {'ms/pod':>8} {'x baseline':>11}")
    for n, seconds in results.items():
        print(f"{n:>6} {seconds:>9.3f} {seconds / n * 1000:>8.1f} {seconds / base:>11.1f}")


if __name__ == "__main__":
    main()
