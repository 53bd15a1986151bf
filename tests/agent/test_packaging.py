"""The shipped example config loads, and the unit file keeps its hardening."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from agent.config import load_agent_config

SYSTEMD = Path(__file__).resolve().parents[2] / "packaging" / "systemd"


def test_example_config_is_valid() -> None:
    config = load_agent_config(SYSTEMD / "agent.yaml", {})
    assert config.coordinator is not None and not config.coordinator.plaintext
    assert config.coordinator.ca == Path("/etc/stealbalancer/tls/ca.pem")
    assert config.interval_s == 10 and config.libvirt.uri == "qemu:///system"


def _unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(SYSTEMD / "stealbalancer-agent.service")
    return parser


@pytest.mark.parametrize(
    ("key", "value"),
    [
        pytest.param("NoNewPrivileges", "yes", id="no-new-privileges"),
        pytest.param("ProtectSystem", "strict", id="protect-system"),
        pytest.param("ProtectHome", "yes", id="protect-home"),
        pytest.param("Restart", "on-failure", id="restart"),
        pytest.param("Type", "notify", id="readiness"),
        pytest.param("ReadOnlyPaths", "/etc/stealbalancer", id="only-its-config"),
    ],
)
def test_unit_is_hardened(key: str, value: str) -> None:
    assert _unit()["Service"][key] == value


def test_unit_runs_the_console_script_with_the_example_config() -> None:
    exec_start = _unit()["Service"]["ExecStart"]
    assert exec_start.split()[0].endswith("/stealbalancer-agent")
    assert "/etc/stealbalancer/agent.yaml" in exec_start
