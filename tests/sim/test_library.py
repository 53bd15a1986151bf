"""The scenario library: every shape loads, tells its story and builds a World."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.sim import library
from coordinator.sim.scenario import reference_scenario
from coordinator.sim.world import World
from tests.benchmarks.bench_scenarios import holdout_files

EXPECTED = {
    "reference",
    "mixed-hosts",
    "hot-az",
    "overloaded-az",
    "placement-waves",
    "local-disks",
}


def test_the_library_holds_the_issue_s_shapes() -> None:
    assert set(library.names()) == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_scenario_loads_with_a_story_and_places_its_vms(name: str) -> None:
    scenario = library.load(name)
    assert scenario.story and "\n" not in scenario.story
    world = World(scenario)  # raises if a VM fits on no host
    assert len(world.vms) >= 300
    limits = scenario.config.limits
    assert limits.fabric_mib_s is not None and limits.link_mib_s is not None


def test_the_reference_file_is_the_built_in_reference_day() -> None:
    from_file = library.load("reference")
    built_in = reference_scenario()
    assert from_file.hosts == built_in.hosts
    assert from_file.vms == built_in.vms
    assert from_file.roles == built_in.roles
    limits, expected = from_file.config.limits, built_in.config.limits
    assert limits.bandwidth_budget_mib_s == expected.bandwidth_budget_mib_s
    assert limits.grant_mib_s == expected.grant_mib_s


@pytest.mark.parametrize("path", holdout_files(), ids=lambda path: path.stem)
def test_each_holdout_shape_loads_with_a_story_and_places_its_vms(path: Path) -> None:
    scenario = library.resolve(path)
    assert scenario.story and "\n" not in scenario.story
    assert len(World(scenario).vms) >= 200  # raises if a VM fits on no host
    assert path.stem not in library.names()  # held out: never a library shape


def test_there_are_holdout_shapes() -> None:
    assert len(holdout_files()) >= 4
