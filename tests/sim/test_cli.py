"""`stealbalancer-coordinator simulate` end to end, its outputs, and bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from coordinator.cli import EXIT_BAD_INPUT, main
from tests.sim.scenarios import tiny_data

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write(tmp_path: Path, data: Any, name: str = "scenario.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_simulate_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = _write(tmp_path, tiny_data(duration_h=1.5))
    out = tmp_path / "out"
    assert main(["simulate", "--scenario", str(scenario), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    for row in ("contended VM-minutes", "p95 steal", "migrations", "GiB moved", "peak migration"):
        assert row in printed
    assert (out / "simulation.png").read_bytes().startswith(PNG_MAGIC)
    results = json.loads((out / "simulation.json").read_text())
    assert set(results) == {
        "scenario",
        "hosts",
        "vms",
        "step_s",
        "no_balancing",
        "balancing",
        "policies",
        "contention_reduction",
        "migrations_per_vm",
        "migrations",
    }
    assert (results["hosts"], results["vms"], results["step_s"]) == (4, 24, 60.0)
    assert (
        set(results["balancing"])
        == set(results["no_balancing"])
        >= {
            "contended_vm_minutes",
            "p95_steal_busy",
            "migrations",
            "gib_moved",
            "peak_migration_bandwidth_mib_s",
            "migrations_failed",
            "migrations_did_not_help",
        }
    )
    assert results["no_balancing"]["migrations"] == 0
    assert len(results["migrations"]) == results["balancing"]["migrations"] > 0
    assert set(results["migrations"][0]) >= {"vm", "source", "target", "outcome", "gib"}


def test_overrides_and_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = _write(tmp_path, tiny_data())
    config = _write(tmp_path, {"limits": {"max_concurrent": 0}}, "config.yaml")
    out = tmp_path / "out"
    argv = ["simulate", "--scenario", str(scenario), "--config", str(config), "--out", str(out)]
    assert main([*argv, "--hours", "0.5", "--seed", "9", "--quiet", "--no-plot"]) == 0
    results = json.loads((out / "simulation.json").read_text())
    assert results["balancing"]["migrations"] == 0  # the config file's cap applies
    assert not (out / "simulation.png").exists()
    assert "30 steps of 60 s (seed 9)" in capsys.readouterr().out


def _mod(change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    data = tiny_data()
    change(data)
    return data


def _vm(**fields: Any) -> Callable[[dict[str, Any]], object]:
    return lambda d: d["vms"][0].update(fields)


def _host(**fields: Any) -> Callable[[dict[str, Any]], object]:
    return lambda d: d["hosts"][0].update(fields)


@pytest.mark.parametrize(
    ("content", "field"),
    [
        pytest.param(_mod(lambda d: d.update(colour=1)), "colour: unknown key", id="unknown-key"),
        pytest.param(_mod(_host(cpus=8)), "hosts.0.cpus: unknown key", id="unknown-host-key"),
        pytest.param(
            _mod(lambda d: d.update(config={"limits": {"max_per_sorce": 1}})),
            "config.limits.max_per_sorce: unknown key",
            id="unknown-config-key",
        ),
        pytest.param(_mod(_host(pcpus=-8)), "hosts.0.pcpus", id="negative-pcpus"),
        pytest.param(_mod(_host(ram_gib=0)), "hosts.0.ram_gib", id="zero-host-ram"),
        pytest.param(_mod(_vm(ram_gib=[-4])), "vms.0.ram_gib", id="negative-vm-ram"),
        pytest.param(_mod(_vm(disk_gib=[-1])), "vms.0.disk_gib", id="negative-disk"),
        pytest.param(_mod(_vm(vcpus=[])), "vms.0.vcpus", id="no-vcpu-sizes"),
        pytest.param(_mod(_vm(count=-3)), "vms.0.count", id="negative-count"),
        pytest.param(_mod(_vm(az="az9")), "vms.0.az", id="az-with-no-hosts"),
        pytest.param(_mod(lambda d: d.update(hosts=[])), "hosts", id="no-hosts"),
        pytest.param(_mod(_vm(role="db")), "vms.0.role", id="role-without-profile"),
        pytest.param(_mod(_vm(host="nope")), "vms.0.host", id="pinned-to-unknown-host"),
        pytest.param(_mod(_vm(server_group="sg")), "vms.0.server_group", id="undefined-group"),
        pytest.param(_mod(lambda d: d.update(noise=float("nan"))), "noise", id="nan-noise"),
        pytest.param(
            _mod(_vm(intensity={"min": 0.1, "max": float("nan")})),
            "vms.0.intensity.max",
            id="nan-intensity",
        ),
        pytest.param(
            _mod(lambda d: d.update(config={"policy": {"steal_threshold": float("inf")}})),
            "config.policy.steal_threshold",
            id="inf-threshold",
        ),
        pytest.param(_mod(_host(count=10**9)), "hosts.0.count", id="absurd-host-count"),
        pytest.param(
            _mod(lambda d: d["hosts"].append(dict(d["hosts"][0]))),
            "hosts.1.prefix",
            id="colliding-host-names",
        ),
        pytest.param(_mod(lambda d: d.update(duration_h=0.001)), "duration_h", id="no-step"),
        pytest.param(_mod(lambda d: d.update(seed=-1)), "seed", id="negative-seed"),
        pytest.param(_mod(_vm(vcpus=[64])), "vms.0: VM web-0000", id="vm-fits-nowhere"),
        pytest.param(_mod(_vm(count=500)), "fits on no host of AZ az1", id="az-full"),
        pytest.param("hosts: [\n  - {prefix: a", "not valid YAML/JSON", id="broken-yaml"),
        pytest.param("- 1\n- 2\n", "expected a mapping at the top level", id="not-a-mapping"),
        pytest.param("", "hosts: Field required", id="empty-file"),
    ],
)
def test_bad_scenario_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: Any, field: str
) -> None:
    scenario = _write(tmp_path, content)
    argv = ["simulate", "--scenario", str(scenario), "--out", str(tmp_path / "o"), "--quiet"]
    assert main(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert err.count("\n") == 1, err
    assert field in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param(["--hours", "-1"], "--hours must be a positive number", id="negative-hours"),
        pytest.param(["--hours", "nan"], "--hours must be a positive number", id="nan-hours"),
        pytest.param(["--hours", "1000"], "duration_h", id="hours-above-maximum"),
        pytest.param(["--seed", "-2"], "--seed must not be negative", id="negative-seed"),
        pytest.param(["--scenario", "/nonexistent/s.yaml"], "cannot read", id="missing-file"),
        pytest.param(["--config", "/nonexistent/c.yaml"], "cannot read", id="missing-config"),
        pytest.param(["--scenario", "{dir}"], "cannot read", id="scenario-is-a-directory"),
        pytest.param(["--out", "{file}"], "--out", id="out-is-a-file"),
    ],
)
def test_bad_options_are_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    scenario = _write(tmp_path, tiny_data())
    a_file = _write(tmp_path, "x", "a-file")
    extra = [e.format(dir=tmp_path, file=a_file) for e in extra]
    argv = ["simulate", "--scenario", str(scenario), "--out", str(tmp_path / "o"), "--quiet"]
    assert main([*argv, *extra]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert message in err


def test_bad_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write(tmp_path, {"policy": {"steal_treshold": 0.1}}, "config.yaml")
    assert main(["simulate", "--config", str(config), "--quiet"]) == EXIT_BAD_INPUT
    assert "policy.steal_treshold: unknown key" in capsys.readouterr().err


def test_policies_side_by_side(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = _write(tmp_path, tiny_data(duration_h=1.5))
    out = tmp_path / "out"
    argv = ["simulate", "--scenario", str(scenario), "--out", str(out), "--quiet", "--no-plot"]
    assert main([*argv, "--policy", "stealbalancer", "--policy", "naive"]) == 0
    printed = capsys.readouterr().out
    assert "pain VM-minutes" in printed and "naive" in printed
    assert "naive: pain VM-minutes reduced by" in printed
    results = json.loads((out / "simulation.json").read_text())
    assert list(results["policies"]) == ["none", "stealbalancer", "naive"]
    for row in results["policies"].values():
        assert {
            "pain_vm_minutes",
            "busy_pain_vm_minutes",
            "stolen_vcpu_hours",
            "p95_steal",
            "vms_moved_again_within_1h",
            "network_saturated_minutes",
            "pain_reduction",
        } <= set(row)
    assert results["policies"]["none"]["migrations"] == 0
    assert results["policies"]["naive"]["migrations"] > 0


def test_library_scenario_by_name_and_limit_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write(tmp_path, {"limits": {"max_concurrent": 1}}, "config.yaml")
    argv = ["simulate", "--scenario", "hot-az", "--config", str(config), "--hours", "0.2"]
    assert main([*argv, "--out", str(tmp_path / "o"), "--quiet", "--no-plot"]) == 0
    printed = capsys.readouterr().out
    assert "One hot AZ near 90%" in printed
    assert "warning: limits: at most 1 migration(s) can ever run at once" in printed


def test_unknown_library_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["simulate", "--scenario", "no-such-day", "--out", str(tmp_path / "o"), "--quiet"]
    assert main(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "no such file or library scenario" in err and "reference" in err
