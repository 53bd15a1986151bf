"""Every metric the Grafana dashboard's coordinator panels query is exported by a
running coordinator, with the type its query assumes (a counter's _total, a
histogram's _bucket...). The agents' queries ($agent_job) and every query's values:
tests/ctl/test_prometheus.py, through a real Prometheus."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.ctl.coordinator_process import CoordinatorProcess
from tests.packaging.grafana import family, load, queried_series


def scrape(address: str) -> dict[str, str]:
    """Family name → type, from the coordinator's /metrics."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def test_every_dashboard_metric_is_exported(coordinator: CoordinatorProcess) -> None:
    exported = scrape(coordinator.metrics)
    queried = queried_series(load(), "job")
    assert len(queried) >= 8
    for series in sorted(queried):
        name, kind = family(series)
        assert name in exported, f"dashboard queries {series}; the coordinator has no {name}"
        assert exported[name] == kind, f"{series}: exported as a {exported[name]}"
