"""coordctl's human output, from Admin responses built by hand: colour only where
asked for, empty states said in words, numbers formatted for people."""

from __future__ import annotations

import io

import pytest
from rich.console import Console, RenderableType

from coordinator.api.v1 import admin_pb2
from coordinator.ctl import render


def shown(renderable: RenderableType, colour: bool) -> str:
    out = io.StringIO()
    console = Console(file=out, width=140, force_terminal=colour, no_color=not colour,
                      color_system="standard" if colour else None)  # fmt: skip
    console.print(renderable)
    return out.getvalue()


HOT = admin_pb2.ListVmsResponse(
    vms=[
        admin_pb2.VmView(
            name="web-1", host="hv-1", steal=0.25, load=0.9, contended=True, state="active", vcpus=4
        )
    ]
)


def test_colour_only_on_a_colour_terminal() -> None:
    assert "\x1b[" in shown(render.vms(HOT), colour=True)
    plain = shown(render.vms(HOT), colour=False)
    assert "\x1b[" not in plain and "25.0%" in plain and "(contended)" in plain


@pytest.mark.parametrize(
    ("ratio", "style"),
    [
        pytest.param(0.02, "green", id="calm"),
        pytest.param(0.07, "yellow", id="warm"),
        pytest.param(0.10, "red", id="contended"),
    ],
)
def test_steal_colour_thresholds(ratio: float, style: str) -> None:
    assert str(render.steal_text(ratio).style) == style


def test_empty_plan_says_so() -> None:
    text = shown(render.plan(admin_pb2.PlanResponse(paused=True)), colour=False)
    assert "nothing to move" in text and "paused" in text


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        pytest.param(-1.0, "never", id="never"),
        pytest.param(42.4, "42s", id="seconds"),
        pytest.param(600.0, "10m", id="minutes"),
    ],
)
def test_agent_age(seconds: float, expected: str) -> None:
    assert render.age(seconds) == expected


def test_running_migration_duration_is_open_ended() -> None:
    running = admin_pb2.ListMigrationsResponse(
        migrations=[
            admin_pb2.MigrationView(
                id="abcdef0123",
                vm_name="db-1",
                source="a",
                target="b",
                state="MIGRATING",
                steal_before=0.2,
                steal_after=-1,
                created_unix_ns=1,
            )
        ]
    )
    text = shown(render.migrations(running), colour=False)
    assert "abcdef01" in text and "+" in text and "20.0% → ?" in text
    assert "OUTCOME" in text
