"""`python -m coordinator.config_reference`: complete, true to the models, and its
YAML form is a loadable config equal to the defaults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from coordinator import config as config_module
from coordinator import detach_config
from coordinator.config import Config, load_config
from coordinator.config_reference import Key, field_docs, markdown, sections, yaml_example


def _all_keys() -> dict[str, Key]:
    return {k.path: k for s in sections() for k in s.keys}


def _flatten(data: dict[str, Any], prefix: str = "") -> set[str]:
    paths: set[str] = set()
    for key, value in data.items():
        if isinstance(value, dict) and value:
            paths |= _flatten(value, f"{prefix}{key}.")
        else:
            paths.add(f"{prefix}{key}")
    return paths


def test_every_default_key_is_in_the_reference() -> None:
    defaults = _flatten(Config().model_dump())
    documented = set(_all_keys())
    # Mappings/sections that are empty or null by default are documented by their
    # sub-keys (service.tls.*, service.admin_tls.*, kubernetes.clusters.<name>.*).
    assert defaults - documented == {"service.tls", "service.admin_tls", "kubernetes.clusters"}
    assert {"service.tls.cert_file", "kubernetes.clusters.<name>.kubeconfig"} <= documented


def _own_models() -> list[type[BaseModel]]:
    return [
        value
        for module in (config_module, detach_config)
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, BaseModel)
        and value.__module__ == module.__name__
    ]


@pytest.mark.parametrize("model", _own_models(), ids=lambda m: m.__name__)
def test_every_key_of_coordinator_config_has_a_meaning(model: type[BaseModel]) -> None:
    nested = {"policy", "limits", "cost", "service", "nova", "inventory", "workflow", "tls",
              "kubernetes", "consul", "leader"}  # fmt: skip
    missing = [n for n in model.model_fields if n not in nested and n not in field_docs(model)]
    assert not missing, f"{model.__name__}: add a docstring under {missing}"


@pytest.mark.parametrize(
    ("path", "default", "bounds"),
    [
        pytest.param("policy.steal_threshold", 0.05, "≥ 0, ≤ 1", id="ratio"),
        pytest.param("limits.max_concurrent", 8, "≥ 0", id="int"),
        pytest.param("service.admin_token", "", "", id="string"),
        pytest.param("nova.cloud", None, "", id="optional"),
        pytest.param("cost.max_dirty_to_bandwidth", 0.8, "> 0, < 1", id="open-interval"),
    ],
)
def test_defaults_and_bounds_match_the_models(path: str, default: Any, bounds: str) -> None:
    key = _all_keys()[path]
    assert key.default == default and key.bounds == bounds and not key.required


def test_markdown_has_a_table_per_section() -> None:
    text = markdown()
    for section in sections():
        assert f"### `{section.path}`" in text
    assert "| `policy.steal_threshold` | float | `0.05` | ≥ 0, ≤ 1 | A VM is a candidate" in text


def test_yaml_example_loads_as_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "coordinator.yaml"
    path.write_text(yaml_example(), encoding="utf-8")
    assert load_config(path) == Config()


def test_yaml_example_tls_section_uncommented_is_valid(tmp_path: Path) -> None:
    lines = yaml_example().splitlines()
    start = lines.index("  # tls:")
    block = []
    for line in lines[start:]:
        if not line.strip():
            break
        block.append(line)
    # Key lines are commented at the section's indent ("  # tls:", "  #   ca_file:"),
    # explanations one level deeper ("    # Client CA..."), so they stay comments.
    enabled = [ln.replace("# ", "", 1) if ln.startswith("  # ") else ln for ln in block]
    text = "\n".join(enabled).replace("<required>", "/etc/x.pem")
    path = tmp_path / "tls.yaml"
    path.write_text("service:\n" + text + "\n", encoding="utf-8")
    tls = load_config(path).service.tls
    assert tls is not None and tls.cert_file == "/etc/x.pem"


def test_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "coordinator.config_reference", "--format", "yaml"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert done.stdout == yaml_example()


def test_the_readme_carries_the_current_reference() -> None:
    """The README's reference is pasted from the generator; regenerate it when a key
    changes: python -m coordinator.config_reference."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert markdown().strip() in readme
