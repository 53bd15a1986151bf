"""The agent's guest-load path against Debian's own qemu-ga in a real QEMU guest.

The load a guest reports itself is better than the host's estimate, and the agent asks
for it (`guest-get-load`) only of domains with a guest-agent channel. qemu-ga gained
that command in QEMU 9.1; Debian 12 ships 7.2, which answers "command not found". So
whichever qemu-ga the distribution has, the agent must either use the guest's figure
or fall back to the host's estimate and stop asking for a while, without an error.
"""

from __future__ import annotations

from pathlib import Path

import libvirt
import pytest

import agent.sources.libvirt as libvirt_source
from agent.sources.base import DomainReading, LoadOrigin
from agent.sources.libvirt import LibvirtSource
from tests.agent.guests import burning_guests, guest_agent_command, open_system

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

CYCLES = 4


def test_guest_load_comes_from_qemu_ga_or_falls_back_and_backs_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []
    ask_guest = libvirt_source._guest_load

    def counted(dom: libvirt.virDomain) -> float | None:
        asked.append(dom.UUIDString())
        return ask_guest(dom)

    monkeypatch.setattr(libvirt_source, "_guest_load", counted)
    conn = open_system()
    source = LibvirtSource()
    try:
        with burning_guests(conn, 1, tmp_path, cpuset="0", guest_agent=True) as [guest]:
            info = guest_agent_command(guest, "guest-info")
            supported = {c["name"] for c in info["supported_commands"] if c["enabled"]}
            readings: list[DomainReading] = []
            for _ in range(CYCLES):
                readings += [d for d in source.domains() if d.domain_uuid == guest.uuid]
    finally:
        source.close()
        conn.close()
    assert len(readings) == CYCLES, "every cycle reports the domain, agent or not"
    if "guest-get-load" in supported:
        assert {r.load_origin for r in readings} == {LoadOrigin.GUEST_AGENT}, readings
        assert all(r.guest_load_1m is not None and r.guest_load_1m >= 0 for r in readings)
        assert asked == [guest.uuid] * CYCLES
    else:
        # qemu-ga answered, without the command: the host's estimate, and the agent
        # does not ask again on the following cycles.
        assert info["version"], info
        assert {r.load_origin for r in readings} == {LoadOrigin.HOST_ESTIMATE}, readings
        assert all(r.guest_load_1m is None for r in readings)
        assert asked == [guest.uuid], "asked once, then backed off"
