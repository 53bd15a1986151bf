"""Every query of the Grafana dashboard, and every alert rule, evaluated by a real
Prometheus (Debian's package) scraping a running coordinator (`serve --simulate`,
accelerated) and a real agent (libvirt's test:/// driver).

Each query must return series, with values in the range its panel expects: ratios in
[0, 1], counts and durations non-negative, bandwidth in use within the budget. A
query that returns nothing (a misspelt metric, a label that never exists, a rate over
a counter that is never created) fails the test."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.ctl.coordinator_process import HERE, CoordinatorProcess, start_coordinator_with
from tests.ctl.prometheus_process import (
    Prometheus,
    finite,
    free_port,
    start_agent,
    start_prometheus,
    stop,
)
from tests.packaging.grafana import load

pytestmark = pytest.mark.slow
RULES = HERE.parents[1] / "packaging" / "prometheus" / "rules.yaml"
COORDINATOR_JOB, AGENT_JOB = "stealbalancer-coordinator", "stealbalancer-agent"
WARM_UP_S = 150.0


@dataclass(frozen=True)
class Range:
    low: float = 0.0
    high: float = math.inf

    def holds(self, value: float) -> bool:
        return finite(value) and self.low <= value <= self.high


RATIO = Range(0.0, 1.0)
NON_NEGATIVE = Range()
FLAG = Range(0.0, 1.0)
# (panel id, refId) → the range its values must fall in. Every query of the dashboard
# has an entry (test_every_query_has_an_expected_range), so a new panel needs one.
EXPECTED: dict[tuple[int, str], Range] = {
    (1, "A"): RATIO,  # cluster steal
    (2, "A"): NON_NEGATIVE,  # contended VMs
    (3, "A"): NON_NEGATIVE, (3, "B"): NON_NEGATIVE,  # migrations by outcome, running
    (4, "A"): NON_NEGATIVE, (4, "B"): Range(low=1.0),  # bandwidth in use, budget
    (5, "A"): NON_NEGATIVE, (5, "B"): NON_NEGATIVE, (5, "C"): NON_NEGATIVE,  # latency
    (6, "A"): NON_NEGATIVE, (6, "B"): NON_NEGATIVE, (6, "C"): Range(low=1e-9),  # reports/s
    (6, "D"): NON_NEGATIVE,
    (7, "A"): NON_NEGATIVE,  # open migrations by state
    (8, "A"): NON_NEGATIVE, (8, "B"): NON_NEGATIVE, (8, "C"): NON_NEGATIVE,  # detached
    (9, "A"): NON_NEGATIVE, (9, "B"): NON_NEGATIVE, (9, "C"): NON_NEGATIVE,  # parked...
    (10, "A"): NON_NEGATIVE, (10, "B"): NON_NEGATIVE,  # pain
    (11, "A"): FLAG, (11, "B"): FLAG, (11, "C"): FLAG,  # leader, paused, journal
    (11, "D"): NON_NEGATIVE, (11, "E"): NON_NEGATIVE,  # error rates
    # Report age (simulated seconds); the agent's collection p99, within its buckets.
    (12, "A"): NON_NEGATIVE, (12, "B"): Range(1e-9, 5.0),
}  # fmt: skip
# Panels of one query in use and its cap: in use never exceeds the cap.
WITHIN: dict[tuple[int, str], tuple[int, str]] = {(4, "A"): (4, "B")}


@dataclass(frozen=True)
class Query:
    panel: int
    ref: str
    title: str
    expr: str


def dashboard_queries() -> list[Query]:
    """The panels' queries as Grafana sends them, with $job and $agent_job set."""
    return [
        Query(p["id"], t["refId"], p["title"],
              t["expr"].replace("$agent_job", AGENT_JOB).replace("$job", COORDINATOR_JOB))
        for p in load()["panels"] for t in p["targets"]
    ]  # fmt: skip


def test_every_query_has_an_expected_range() -> None:
    assert {(q.panel, q.ref) for q in dashboard_queries()} == set(EXPECTED)


@dataclass
class Stack:
    coordinator: CoordinatorProcess
    prometheus: Prometheus


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("prometheus")
    coordinator = start_coordinator_with(
        directory, HERE / "scenario.yaml", speed=60.0, paused=False
    )
    agent_metrics = free_port()
    agent = start_agent(directory, coordinator.agent, agent_metrics)
    try:
        jobs = {COORDINATOR_JOB: [coordinator.metrics], AGENT_JOB: [f"127.0.0.1:{agent_metrics}"]}
        prometheus = start_prometheus(directory, jobs, [RULES])
        try:
            yield Stack(coordinator, prometheus)
        finally:
            stop(prometheus.process)
    finally:
        stop(agent)
        coordinator.stop()


Results = dict[tuple[int, str], list[tuple[dict[str, str], float]]]


def _evaluate(prometheus: Prometheus) -> Results:
    return {(q.panel, q.ref): prometheus.query(q.expr) for q in dashboard_queries()}


def _settled(results: Results) -> bool:
    return all(series and all(finite(v) for _, v in series) for series in results.values())


def _wait(prometheus: Prometheus, ready: Callable[[Results], bool]) -> Results:
    """Rates need two scrapes and histograms an observation in the window: poll,
    bounded, until every query has settled; the assertions run on what is there."""
    deadline = time.monotonic() + WARM_UP_S
    results = _evaluate(prometheus)
    while not ready(results) and time.monotonic() < deadline:
        time.sleep(2.0)
        results = _evaluate(prometheus)
    return results


def test_both_targets_are_scraped(stack: Stack) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        targets = stack.prometheus.api("targets")["activeTargets"]
        if len(targets) == 2 and all(t["health"] == "up" for t in targets):
            break
        time.sleep(1.0)
    assert {t["labels"]["job"]: t["health"] for t in targets} == {
        COORDINATOR_JOB: "up",
        AGENT_JOB: "up",
    }, [t.get("lastError") for t in targets]


def test_every_dashboard_query_returns_series_in_its_range(stack: Stack) -> None:
    results = _wait(stack.prometheus, _settled)
    titles = {(q.panel, q.ref): f"{q.title} [{q.ref}]: {q.expr}" for q in dashboard_queries()}
    empty = [titles[key] for key, series in results.items() if not series]
    assert not empty, "queries that returned no series:\n" + "\n".join(empty)
    for key, series in results.items():
        for labels, value in series:
            assert EXPECTED[key].holds(value), f"{titles[key]} {labels} = {value}"
    for used, cap in WITHIN.items():
        assert max(v for _, v in results[used]) <= min(v for _, v in results[cap]), titles[used]


def test_labelled_queries_split_by_their_label(stack: Stack) -> None:
    """`sum by (state)` returns one series per state the coordinator creates up front."""
    results = _wait(stack.prometheus, _settled)
    for query in dashboard_queries():
        if "sum by (state) (stealbalancer_migrations_open" in query.expr:
            states = {labels["state"] for labels, _ in results[(query.panel, query.ref)]}
            assert states == {"PLANNED", "DETACHING", "MIGRATING", "VERIFYING", "REATTACHING"}


def test_every_alert_rule_evaluates_without_error(stack: Stack) -> None:
    deadline = time.monotonic() + 60
    while True:
        groups = stack.prometheus.api("rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        evaluated = all(r.get("lastEvaluation", "").startswith("20") for r in rules)
        if evaluated or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    alerts = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    assert {r["name"] for r in rules} == {a["alert"] for a in alerts}
    for rule in rules:
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))


def test_the_coordinator_sees_the_real_agent(stack: Stack) -> None:
    """The agent's stream reaches the coordinator's ingest: it is either folded in
    (a report age for its host) or refused as a host Nova does not list; both are
    series the alerts watch."""
    expr = (
        'stealbalancer_agent_last_report_age_seconds{host="prometheus-test-agent"} '
        'or stealbalancer_agent_rejected_total{reason="unknown_host"} > 0'
    )

    def seen(_: Results) -> bool:
        return bool(stack.prometheus.query(expr))

    _wait(stack.prometheus, seen)
    assert stack.prometheus.query(expr), Path(stack.coordinator.log).read_text()[-2000:]
