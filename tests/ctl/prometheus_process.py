"""A real Prometheus server (Debian's `prometheus` package) on a loopback port, with
a temporary config and data directory, and the agent process it scrapes. Started by
the tests, never as the packaged system service."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.ctl.coordinator_process import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@dataclass
class Prometheus:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """An instant query's series: (labels, value); NaN/Inf come back as floats."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data["resultType"])
        return [(s["metric"], float(s["value"][1])) for s in data["result"]]


def start_prometheus(
    directory: Path, jobs: dict[str, list[str]], rule_files: list[Path]
) -> Prometheus:
    """Scrape every second, evaluate rules every second; wait, bounded, until ready."""
    binary = shutil.which("prometheus")
    assert binary is not None, "tests/setup/10-apt.sh installs Debian's prometheus package"
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": targets}]}
            for job, targets in jobs.items()
        ],
    }
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{free_port()}"
    log = directory / "prometheus.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [binary, f"--config.file={directory / 'prometheus.yml'}",
             f"--storage.tsdb.path={directory / 'data'}",
             f"--web.listen-address={url.removeprefix('http://')}"],
            stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                if response.status == 200:
                    return Prometheus(process, url, log)
        except OSError:
            time.sleep(0.2)
    stop(process)
    raise RuntimeError(f"prometheus did not start:\n{log.read_text()[-2000:]}")


def start_agent(directory: Path, coordinator: str, metrics_port: int) -> subprocess.Popen[bytes]:
    """`python -m agent` on libvirt's test:/// driver, streaming to `coordinator`
    (plaintext on loopback) and serving /metrics on `metrics_port`."""
    command = [
        sys.executable, "-m", "agent", "--libvirt-uri", "test:///default",
        "--coordinator", coordinator, "--plaintext", "--host", "prometheus-test-agent",
        "--interval", "1", "--metrics-port", str(metrics_port),
    ]  # fmt: skip
    with (directory / "agent.log").open("wb") as sink:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        return subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=REPO, env=env)


def finite(value: float) -> bool:
    return not (math.isnan(value) or math.isinf(value))
