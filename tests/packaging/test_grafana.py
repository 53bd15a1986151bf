"""The Grafana dashboard, statically: well-formed, covers what operators asked for.
(That every query returns data in range from a real Prometheus:
tests/ctl/test_prometheus.py; that each metric has the type its query assumes:
tests/ctl/test_dashboard_metrics.py.)"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.packaging.grafana import JOB_VARIABLES, expressions, family, load, queried_series

DASHBOARD = load()


def test_panels_have_unique_ids_titles_and_the_datasource_variable() -> None:
    panels = DASHBOARD["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert all(p["title"] and p["targets"] for p in panels)
    variables = {v["name"] for v in DASHBOARD["templating"]["list"]}
    assert {"datasource", *JOB_VARIABLES} <= variables
    for p in panels:
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"])


def _cells(panel: dict[str, Any]) -> set[tuple[int, int]]:
    g = panel["gridPos"]
    return {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}


def test_panels_fit_the_grid_without_overlap() -> None:
    for p in DASHBOARD["panels"]:
        assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
    for a, b in itertools.combinations(DASHBOARD["panels"], 2):
        assert not _cells(a) & _cells(b), (a["title"], b["title"])


@pytest.mark.parametrize(
    "series",
    [
        pytest.param("stealbalancer_cluster_steal_ratio", id="cluster-steal"),
        pytest.param("stealbalancer_vms_contended", id="contended-vms"),
        pytest.param("stealbalancer_migrations_total", id="migrations-by-outcome"),
        pytest.param("stealbalancer_migration_bandwidth_mib_s", id="bandwidth-in-use"),
        pytest.param("stealbalancer_migration_bandwidth_budget_mib_s", id="bandwidth-budget"),
        pytest.param("stealbalancer_plan_seconds_bucket", id="decision-latency"),
        pytest.param("stealbalancer_migrations_open", id="migrations-by-state"),
        pytest.param("stealbalancer_detached_seconds_max", id="time-detached"),
        pytest.param("stealbalancer_parked", id="parked-vms-and-hosts"),
        pytest.param("stealbalancer_vms_unmovable", id="unmovable-by-reason"),
        pytest.param("stealbalancer_vms_in_pain", id="pain"),
        pytest.param("stealbalancer_agent_last_report_age_seconds", id="agent-stale"),
        pytest.param("stealbalancer_journal_writable", id="journal"),
        pytest.param("stealbalancer_leader", id="leader"),
    ],
)
def test_covers_what_operators_asked_for(series: str) -> None:
    assert series in queried_series(DASHBOARD)


def test_expressions_are_balanced_and_filter_on_the_job() -> None:
    for expr in expressions(DASHBOARD):
        for opening, closing in ("()", "{}", "[]"):
            assert expr.count(opening) == expr.count(closing), expr
        assert any(f'job=~"${v}"' in expr for v in JOB_VARIABLES), expr


@pytest.mark.parametrize(
    ("series", "expected"),
    [
        pytest.param("a_total", ("a", "counter"), id="counter"),
        pytest.param("a_bucket", ("a", "histogram"), id="bucket"),
        pytest.param("a_count", ("a", "histogram"), id="count"),
        pytest.param("a_ratio", ("a_ratio", "gauge"), id="gauge"),
    ],
)
def test_family_of_a_series(series: str, expected: tuple[str, str]) -> None:
    assert family(series) == expected
