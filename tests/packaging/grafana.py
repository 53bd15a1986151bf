"""Reading packaging/grafana/stealbalancer.json: its panels and the metrics they query."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parents[2] / "packaging" / "grafana" / "stealbalancer.json"
_METRIC = re.compile(r"\bstealbalancer_[a-z0-9_]+")
_SUFFIXES = {"_total": "counter", "_bucket": "histogram", "_sum": "histogram",
             "_count": "histogram"}  # fmt: skip


def load() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return dashboard


# The template variable each job's queries filter on: the coordinator's, the agents'.
JOB_VARIABLES = ("job", "agent_job")


def expressions(dashboard: dict[str, Any], job_variable: str | None = None) -> list[str]:
    """Every panel query; with `job_variable`, those filtering on that variable only."""
    found = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    if job_variable is None:
        return found
    return [e for e in found if f'job=~"${job_variable}"' in e]


def queried_series(dashboard: dict[str, Any], job_variable: str | None = None) -> set[str]:
    """Every series name (with its _total/_bucket/... suffix) the panels query."""
    return {m for e in expressions(dashboard, job_variable) for m in _METRIC.findall(e)}


def family(series: str) -> tuple[str, str]:
    """(family name, the metric type the suffix implies; 'gauge' when none)."""
    for suffix, kind in _SUFFIXES.items():
        if series.endswith(suffix):
            return series.removesuffix(suffix), kind
    return series, "gauge"
