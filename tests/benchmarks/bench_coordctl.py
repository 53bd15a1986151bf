"""coordctl benchmark: how long each Admin call takes on the reference day (80
hypervisors, 1,000 VMs), against `status` measured in the same run, and what the
output formats cost.

    python -m tests.benchmarks.bench_coordctl [--calls 30] [--warmup-s 10]

A real coordinator (`serve --simulate`, reference day, 60x, paused so that nothing
moves under the measurement) runs in a subprocess on loopback; calls go through
coordctl's own client (`coordinator.ctl.connection.Admin`). Figures are medians.
Baselines: `status` for the calls, `--json` for the table rendering, and a bare
`python -c pass` for the whole `coordctl` process (start-up dominates it).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from coordinator.api.v1 import admin_pb2
from coordinator.ctl import render
from coordinator.ctl.connection import Admin, Settings
from coordinator.ctl.views import to_plain
from tests.benchmarks.timing import median_ms
from tests.ctl.coordinator_process import TOKEN, CoordinatorProcess, start_coordinator_with

CALLS: list[tuple[str, str, Any]] = [
    ("status", "Status", admin_pb2.StatusRequest()),
    ("hosts (80)", "ListHosts", admin_pb2.ListHostsRequest()),
    ("vms --limit 15", "ListVms", admin_pb2.ListVmsRequest(limit=15)),
    ("vms (all 1,000)", "ListVms", admin_pb2.ListVmsRequest()),
    ("migrations", "ListMigrations", admin_pb2.ListMigrationsRequest(limit=50)),
    ("plan", "PreviewPlan", admin_pb2.PreviewPlanRequest()),
    ("explain web-0000", "Explain", admin_pb2.ExplainRequest(vm="web-0000")),
]


def _caller(admin: Admin, method: str, request: Any) -> Callable[[], Any]:
    return lambda: admin.call(method, request)


def bench_calls(admin: Admin, calls: int) -> None:
    results = {name: median_ms(_caller(admin, m, r), calls) for name, m, r in CALLS}
    base = results["status"]
    print(f"{'Admin call':<22}{'median ms':>12}{'× status':>10}")
    for name, ms in results.items():
        print(f"{name:<22}{ms:>12.2f}{ms / base:>10.1f}")


def bench_rendering(admin: Admin, calls: int) -> None:
    vms = admin.call("ListVms", admin_pb2.ListVmsRequest())

    def table() -> None:
        Console(file=io.StringIO(), width=160, no_color=True).print(render.vms(vms))

    as_json = median_ms(lambda: json.dumps(to_plain(vms)), calls)
    as_table = median_ms(table, calls)
    print(f"\nrendering 1,000 VMs: --json {as_json:.1f} ms, table {as_table:.1f} ms "
          f"({as_table / as_json:.1f}× --json)")  # fmt: skip


def bench_process(coordinator: CoordinatorProcess, runs: int) -> None:
    repo = Path(__file__).resolve().parents[2]
    env_args = ["env", f"PYTHONPATH={repo}", f"COORDCTL_ADDRESS={coordinator.admin}",
                f"COORDCTL_TOKEN={TOKEN}"]  # fmt: skip
    script = str(Path(sys.executable).parent / "coordctl")

    def once(command: list[str]) -> None:
        subprocess.run(command, capture_output=True, check=True, timeout=60)

    python = median_ms(lambda: once([sys.executable, "-c", "pass"]), runs)
    status = median_ms(lambda: once([*env_args, script, "status"]), runs)
    print(f"\nwhole process: `coordctl status` {status:.0f} ms, `python -c pass` "
          f"{python:.0f} ms ({status / python:.1f}×)")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_coordctl")
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--warmup-s", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        coordinator = start_coordinator_with(Path(tmp), scenario=None, speed=60.0)
        try:
            time.sleep(args.warmup_s)  # every agent has reported a few times
            admin = Admin(Settings(address=coordinator.admin, token=TOKEN, timeout_s=30))
            bench_calls(admin, args.calls)
            bench_rendering(admin, args.calls)
            bench_process(coordinator, max(args.calls // 3, 5))
            admin.close()
        finally:
            coordinator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
