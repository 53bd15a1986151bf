"""The agent's configuration: YAML file + command-line flags, validated once.

Flags are merged into the file's mapping before validation, so a bad flag value is
reported exactly like a bad key in the file (`interval_s: Input should be ...`).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from coordinator.config import ConfigError, parse_model, read_structured_file

__all__ = ["AgentConfig", "ConfigError", "load_agent_config"]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class CoordinatorSection(_Section):
    """Where to stream, and how to authenticate."""

    address: str = Field(min_length=1)
    """host:port of the coordinator's AgentLink endpoint."""
    plaintext: bool = False
    """Send without TLS. Must be said explicitly; meant for loopback and tests."""
    ca: Path | None = None
    """PEM bundle that signs the coordinator's certificate."""
    cert: Path | None = None
    """This agent's client certificate (PEM), for mTLS."""
    key: Path | None = None
    """The client certificate's private key (PEM)."""
    server_name: str | None = None
    """Expected name in the coordinator's certificate, if not the address's host."""

    @model_validator(mode="after")
    def _tls_or_plaintext(self) -> CoordinatorSection:
        tls = (self.ca, self.cert, self.key)
        if self.plaintext and any(tls):
            raise ValueError("plaintext: true cannot be combined with ca/cert/key")
        if not self.plaintext and not all(tls):
            raise ValueError("mTLS needs ca, cert and key (or plaintext: true, explicitly)")
        return self


class LibvirtSection(_Section):
    uri: str = "qemu:///system"
    steal_source: Literal["auto", "libvirt", "schedstat"] = "auto"
    """auto: libvirt's vcpu.<n>.delay when present, else /proc/<tid>/schedstat."""


class MetricsSection(_Section):
    port: int = Field(9478, ge=0, le=65535)
    """Prometheus /metrics port; 0 turns the endpoint off."""
    address: str = "127.0.0.1"


class ReconnectSection(_Section):
    initial_s: float = Field(1.0, gt=0)
    # 10 s, not 60: while a coordinator fails over (no Ready replica for a Lease
    # duration) the backoff keeps growing, and with 60 s agents came back a median
    # 42 s after the kill instead of within seconds of the new leader (bench_failover).
    max_s: float = Field(10.0, gt=0)


class SimVmSection(_Section):
    name: str
    vcpus: int = Field(2, ge=1)
    demand: float = Field(0.5, ge=0, le=1)
    steal: float = Field(0.0, ge=0, le=1)
    instance_uuid: str = ""


class AgentConfig(_Section):
    """The whole agent configuration (packaging/systemd/agent.yaml documents it)."""

    host: str = Field(default_factory=socket.gethostname, min_length=1)
    """The hypervisor's name as Nova knows it (`openstack hypervisor list`)."""
    availability_zone: str = ""
    interval_s: float = Field(10.0, ge=0.1, le=3600)
    """Seconds between reports. Any value suits the unit's WatchdogSec: the watchdog is
    pinged on a timer of its own (agent/daemon.py)."""
    buffer_reports: int = Field(360, ge=1, le=100_000)
    """Reports kept while disconnected (360 × 10 s = one hour); the oldest go first."""
    source: Literal["libvirt", "sim"] = "libvirt"
    """sim: a simulated hypervisor with `sim_vms`, for tests and demos."""
    procfs_root: Path = Path("/proc")
    coordinator: CoordinatorSection | None = None
    libvirt: LibvirtSection = LibvirtSection()
    metrics: MetricsSection = MetricsSection()
    reconnect: ReconnectSection = ReconnectSection()
    sim_vms: tuple[SimVmSection, ...] = ()


def load_agent_config(path: Path | None, overrides: dict[str, Any]) -> AgentConfig:
    """The file's settings (if any) with `overrides` (dotted keys) applied on top."""
    data: Any = read_structured_file(path) if path is not None else {}
    source = str(path) if path is not None else "command line"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    for dotted, value in overrides.items():
        _set_dotted(data, dotted.split("."), value)
    return parse_model(AgentConfig, data, source)


def _set_dotted(data: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        child = data.get(key)
        if not isinstance(child, dict):
            child = data[key] = {}
        data = child
    data[keys[-1]] = value
