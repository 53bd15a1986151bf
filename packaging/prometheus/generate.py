"""Writes the Prometheus operator's PrometheusRule from the plain rules file.

    python3 packaging/prometheus/generate.py          # rewrite the manifest
    python3 packaging/prometheus/generate.py --check  # exit 1 if it is out of date

packaging/prometheus/rules.yaml is the one source (promtool checks and unit-tests
it); packaging/kubernetes/monitoring/prometheusrule.yaml carries the same groups.
A script, not a module: a top-level `packaging` package would shadow PyPI's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "packaging" / "prometheus" / "rules.yaml"
TARGET = ROOT / "packaging" / "kubernetes" / "monitoring" / "prometheusrule.yaml"
HEADER = (
    "# Generated from packaging/prometheus/rules.yaml by packaging/prometheus/generate.py:\n"
    "# edit the source and rerun it. `kubectl apply -k packaging/kubernetes/monitoring`\n"
    "# where the Prometheus operator runs (its rule selector must match the labels).\n"
)


def manifest(rules: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "stealbalancer",
            "namespace": "stealbalancer",
            "labels": {"app.kubernetes.io/part-of": "stealbalancer", "role": "alert-rules"},
        },
        "spec": {"groups": rules["groups"]},
    }


def render(source: Path = SOURCE) -> str:
    rules = yaml.safe_load(source.read_text(encoding="utf-8"))
    body = yaml.safe_dump(manifest(rules), sort_keys=False, width=100, allow_unicode=True)
    return HEADER + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the manifest is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
