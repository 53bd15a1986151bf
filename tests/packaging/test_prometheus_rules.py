"""The alerting rules (packaging/prometheus/rules.yaml) through Debian's promtool:
syntax, one unit test per alert that fires it and keeps it silent on healthy series,
the scrape config, and the PrometheusRule generated from the same source."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

PROMETHEUS = Path(__file__).resolve().parents[2] / "packaging" / "prometheus"
RULES = PROMETHEUS / "rules.yaml"
# What the issue asked to be alerted on, by the name each alert carries.
EXPECTED_ALERTS = {
    "StealbalancerAgentStale",
    "StealbalancerVmDetachedTooLong",
    "StealbalancerReattachFailing",
    "StealbalancerBandwidthBudgetSaturated",
    "StealbalancerNoLeader",
    "StealbalancerJournalUnwritable",
    "StealbalancerIngestRejecting",
    "StealbalancerVmsContendedUnplaced",
    "StealbalancerReportRecordingStopped",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary is not None, "tests/setup/10-apt.sh installs Debian's prometheus package"
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=120, check=False,
        cwd=PROMETHEUS,
    )  # fmt: skip


def _alerts(path: Path = RULES) -> list[dict[str, Any]]:
    groups = yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(_alerts())} rules found" in result.stdout


def test_every_alert_the_issue_asked_for_is_there() -> None:
    assert {a["alert"] for a in _alerts()} == EXPECTED_ALERTS
    for alert in _alerts():
        assert alert["labels"]["severity"] in {"warning", "critical"}, alert["alert"]
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]


def test_each_alert_has_a_case_that_fires_it_and_one_that_keeps_it_silent() -> None:
    tests = yaml.safe_load((PROMETHEUS / "rules.test.yaml").read_text(encoding="utf-8"))
    fires: set[str] = set()
    silent: set[str] = set()
    for case in tests["tests"]:
        for check in case["alert_rule_test"]:
            (fires if check["exp_alerts"] else silent).add(check["alertname"])
    names = {a["alert"] for a in _alerts()}
    assert fires == names, "alerts without a test that fires them"
    assert silent == names, "alerts without a test on healthy series"


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", "rules.test.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_fail_on_a_broken_rule(tmp_path: Path) -> None:
    """The unit tests can fail: an alert that waits too long misses its firing case."""
    shutil.copy(PROMETHEUS / "rules.test.yaml", tmp_path)
    broken = RULES.read_text(encoding="utf-8").replace("for: 2m", "for: 1h")
    (tmp_path / "rules.yaml").write_text(broken, encoding="utf-8")
    binary = shutil.which("promtool")
    assert binary is not None
    result = subprocess.run(
        [binary, "test", "rules", "rules.test.yaml"],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode != 0
    assert "StealbalancerJournalUnwritable" in result.stdout + result.stderr


def test_the_scrape_config_example_is_valid() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {
        j["job_name"]
        for j in yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["scrape_configs"]
    }
    assert jobs == {"stealbalancer-coordinator", "stealbalancer-agent"}


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_rules", PROMETHEUS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_prometheusrule_is_generated_from_the_rules_and_current() -> None:
    generate = _generator()
    assert generate.main(["--check"]) == 0, "run: python3 packaging/prometheus/generate.py"
    manifest = yaml.safe_load(generate.TARGET.read_text(encoding="utf-8"))
    assert manifest["kind"] == "PrometheusRule"
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
    assert manifest["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_a_stale_prometheusrule_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    generate = _generator()
    stale = tmp_path / "prometheusrule.yaml"
    stale.write_text(generate.TARGET.read_text().replace("for: 30m", "for: 31m"))
    monkeypatch.setattr(generate, "TARGET", stale)
    assert generate.main(["--check"]) == 1


def test_the_monitoring_overlay_scrapes_the_coordinators_metrics_port() -> None:
    root = PROMETHEUS.parent / "kubernetes"
    monitoring = yaml.safe_load((root / "monitoring" / "kustomization.yaml").read_text())
    for resource in monitoring["resources"]:
        assert (root / "monitoring" / resource).is_file(), resource
    monitor = yaml.safe_load((root / "monitoring" / "servicemonitor.yaml").read_text())
    wanted = monitor["spec"]["selector"]["matchLabels"]
    base = yaml.safe_load((root / "base" / "kustomization.yaml").read_text())
    common = {k: v for pairs in base["labels"] for k, v in pairs["pairs"].items()}
    services = list(yaml.safe_load_all((root / "base" / "services.yaml").read_text()))
    ports = {p["name"] for s in services for p in s["spec"]["ports"]}
    assert wanted.items() <= common.items(), "kustomize labels every base Service with these"
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
