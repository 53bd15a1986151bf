"""coordctl's human output, from Admin responses built by hand: colour only where
asked for, empty states said in words, numbers formatted for people."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console, RenderableType

from coordinator.api.v1 import admin_pb2
from coordinator.ctl import literal, render


def shown(renderable: RenderableType, colour: bool, width: int = 140) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=colour, no_color=not colour,
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


def test_a_stale_host_is_marked_in_words_not_only_in_red() -> None:
    views = [admin_pb2.HostView(name="hv-1", pcpus=8, agent_age_s=5, fresh=True, up=True,
                                enabled=True),
             admin_pb2.HostView(name="hv-2", pcpus=8, agent_age_s=3600, fresh=False, up=True,
                                enabled=True)]  # fmt: skip
    rows = shown(render.hosts(admin_pb2.ListHostsResponse(hosts=views)), colour=False)
    (fresh,) = [line for line in rows.splitlines() if "hv-1" in line]
    (stale,) = [line for line in rows.splitlines() if "hv-2" in line]
    assert "STALE" in stale and "60m" in stale
    assert "STALE" not in fresh


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


# Tenant and agent text: shown as typed, never parsed, never sent raw to the terminal ------
HOSTILE = "[/bold]db\x1b]0;owned\x07\x9b2J\u202e\x7f\n[/]"


@pytest.mark.parametrize(
    ("raw", "shown_as"),
    [
        pytest.param("web-1", "web-1", id="plain"),
        pytest.param("[/bold]x", "[/bold]x", id="markup-kept-literal"),
        pytest.param("a\x1b[31mb", "a\\x1b[31mb", id="csi"),
        pytest.param("t\x1b]0;title\x07", "t\\x1b]0;title\\x07", id="osc"),
        pytest.param("c1\x9b", "c1\\x9b", id="c1"),
        pytest.param("del\x7f", "del\\x7f", id="del"),
        pytest.param("rtl\u202egnp.exe", "rtl\\u202egnp.exe", id="bidi-override"),
        pytest.param("two\nlines\ttab", "two\\x0alines\\x09tab", id="newline-tab"),
        pytest.param("naïve 日本 ok", "naïve 日本 ok", id="printable-unicode"),
    ],
)
def test_escape(raw: str, shown_as: str) -> None:
    assert literal.escape(raw) == shown_as


RESPONSES = [
    pytest.param(lambda: render.vms(admin_pb2.ListVmsResponse(vms=[admin_pb2.VmView(
        name=HOSTILE, host=HOSTILE, availability_zone=HOSTILE, role=HOSTILE, state=HOSTILE,
        contended=True)])), id="vms"),
    pytest.param(lambda: render.hosts(admin_pb2.ListHostsResponse(hosts=[admin_pb2.HostView(
        name=HOSTILE, availability_zone=HOSTILE)])), id="hosts"),
    pytest.param(lambda: render.migrations(admin_pb2.ListMigrationsResponse(migrations=[
        admin_pb2.MigrationView(id=HOSTILE, vm_name=HOSTILE, source=HOSTILE, target=HOSTILE,
                                state=HOSTILE, outcome=HOSTILE)])), id="migrations"),
    pytest.param(lambda: render.plan(admin_pb2.PlanResponse(
        moves=[admin_pb2.PlannedMove(vm_name=HOSTILE, source=HOSTILE, target=HOSTILE,
                                     reason=HOSTILE)],
        skipped=[admin_pb2.SkippedCandidate(vm_name=HOSTILE, reason=HOSTILE)])), id="plan"),
    pytest.param(lambda: render.explain(admin_pb2.ExplainResponse(
        vm_name=HOSTILE, vm_uuid=HOSTILE, verdict=HOSTILE, reasons=[HOSTILE],
        move=admin_pb2.PlannedMove(targets=[admin_pb2.TargetScore(
            host=HOSTILE, rejected_because=HOSTILE)]))), id="explain"),
    pytest.param(lambda: render.status(admin_pb2.StatusResponse(
        paused=True, paused_reason=HOSTILE, leader_identity=HOSTILE, version=HOSTILE)),
        id="status"),
]  # fmt: skip


@pytest.mark.parametrize("make", RESPONSES)
@pytest.mark.parametrize("colour", [False, True])
def test_hostile_text_is_rendered_literally(make: Any, colour: bool) -> None:
    text = shown(make(), colour=colour, width=1000)  # no column cut short
    assert "[/bold]db" in text and "\\x1b]0;owned\\x07" in text and "\\u202e" in text
    assert "\x07" not in text and "\x9b" not in text and "\u202e" not in text
    if not colour:
        assert "\x1b" not in text
