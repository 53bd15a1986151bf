"""The scenario library: cluster shapes shipped with the package, by name.

`simulate --scenario NAME` loads `coordinator/sim/scenarios/NAME.yaml`; anything that
looks like a path (a `/` or a file suffix) is read as a file instead.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from coordinator import strict_yaml
from coordinator.config import ConfigError, parse_model
from coordinator.sim.scenario import Scenario, load_scenario


def names() -> list[str]:
    """Every scenario in the library, sorted."""
    folder = resources.files("coordinator.sim") / "scenarios"
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def load(name: str) -> Scenario:
    """A library scenario by name (ConfigError listing the names if unknown)."""
    if name not in names():
        raise ConfigError(
            f"--scenario {name!r}: no such file or library scenario (library: {', '.join(names())})"
        )
    text = (resources.files("coordinator.sim") / "scenarios" / f"{name}.yaml").read_text()
    return parse_model(Scenario, strict_yaml.load(text), f"scenario {name}")


def resolve(spec: str | Path) -> Scenario:
    """A library name or a scenario file path."""
    text = str(spec)
    if "/" in text or Path(text).suffix or Path(text).exists():
        return load_scenario(Path(text))
    return load(text)
