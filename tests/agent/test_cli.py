"""stealbalancer-agent's command line: config errors name the key, --once --json."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from agent.stream import AgentStream

SIM = """
host: cmp-3
source: sim
sim_vms:
  - {name: busy, vcpus: 4, demand: 1.0, steal: 0.4}
  - {name: calm, vcpus: 1, demand: 0.2, steal: 0.0}
"""

DAEMON = SIM + "coordinator: {address: '127.0.0.1:1', plaintext: true}\n"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "flags", "message"),
    [
        pytest.param("intervl_s: 5\n", [], "intervl_s: unknown key", id="typo"),
        pytest.param("interval_s: -1\n", [], "interval_s: Input should be greater", id="range"),
        pytest.param(
            "coordinator: {address: 'c:1'}\n", [], "mTLS needs ca, cert and key", id="no-tls"
        ),
        pytest.param("libvirt: {steal_source: magic}\n", [], "libvirt.steal_source", id="bad-enum"),
        pytest.param("", ["--steal-source", "x"], "libvirt.steal_source", id="bad-flag"),
        pytest.param("- a\n", [], "expected a mapping", id="not-a-mapping"),
        pytest.param("", [], "coordinator: required", id="daemon-needs-coordinator"),
    ],
)
def test_config_errors_name_the_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    flags: list[str],
    message: str,
) -> None:
    assert main(["--config", str(_write(tmp_path, text)), *flags]) == 2
    assert message in capsys.readouterr().err


def test_once_json_prints_per_vm_steal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, SIM)
    assert main(["--config", str(path), "--once", "--json", "--once-interval", "0.3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["host"] == "cmp-3"
    by_name = {vm["name"]: vm for vm in out["vms"]}
    assert by_name["busy"]["steal"] == pytest.approx(0.4, abs=0.01)
    assert by_name["calm"]["steal"] == pytest.approx(0.0, abs=0.001)
    assert by_name["busy"]["steal_source"] == "simulated"


def test_console_script_once_against_libvirt_test_driver() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agent", "--once", "--json", "--libvirt-uri", "test:///default",
         "--once-interval", "0.1", "--host", "h1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # The test driver's only domain reports no vCPU counters, so it has no rate.
    assert json.loads(done.stdout) == {"host": "h1", "vms": []}


def test_metrics_port_in_use_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["--config", str(_write(tmp_path, DAEMON)), "--metrics-port", str(port)])
    assert code == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"stealbalancer-agent: metrics.address:port 127.0.0.1:{port}: ")
    assert "Address already in use" in line


@pytest.mark.timeout(60)  # the old daemon went on collecting for ever
def test_a_stream_task_that_ends_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def ended(self: AgentStream, stop: asyncio.Event) -> None:
        return None

    monkeypatch.setattr(AgentStream, "run", ended)
    path = _write(tmp_path, DAEMON)
    assert main(["--config", str(path), "--metrics-port", "0"]) == 1
    assert "stealbalancer-agent: the report stream stopped" in capsys.readouterr().err
