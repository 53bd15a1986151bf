"""Scenario files: the hosts, VMs and demand profiles of a simulated day.

A scenario is YAML or JSON. Every key is checked (unknown keys, negative sizes,
NaN, an AZ with no hosts, a role with no profile are errors naming the field).
`reference_scenario()` is the built-in reference day: 80 hypervisors, 1,000 VMs,
2 AZs, services peaking at lunch, 15:00 and 22:00.

Example (the smallest useful one):

    seed: 7
    hosts:
      - {prefix: hv-a, count: 4, az: az1, pcpus: 16, ram_gib: 256}
    roles:
      web: {base: 0.15, peaks: [{hour: 12.5, width_h: 1.0, height: 0.8}]}
    vms:
      - {prefix: web, count: 30, role: web, vcpus: [2, 4], ram_gib: [4, 8],
         intensity: {min: 0.3, max: 0.9}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from coordinator.config import Config, LimitsConfig, parse_model, read_structured_file


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Range(_Strict):
    """A uniform range [min, max]."""

    min: float = Field(ge=0, le=1e6)  # finite: a busy fraction or a MiB/s rate
    max: float = Field(ge=0, le=1e6)

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


class Peak(_Strict):
    """A Gaussian bump of demand around `hour` (wraps around midnight)."""

    hour: float = Field(ge=0, lt=24)
    width_h: float = Field(gt=0, le=12)
    height: float = Field(ge=0, le=2)


class RoleProfile(_Strict):
    """Demand multiplier over the day: base + the peaks, capped at 1."""

    base: float = Field(0.2, ge=0, le=1)
    peaks: tuple[Peak, ...] = ()


# Far beyond any real region, but small enough that a typo (count: 1000000000) is
# an error rather than the machine running out of memory.
MAX_HOSTS = 100_000
MAX_VMS = 2_000_000
# Per machine, likewise: a few times today's largest servers, so sizes stay finite
# through the MiB and byte arithmetic of the world and the cost model.
MAX_PCPUS = 4096
MAX_RAM_GIB = 65_536.0
MAX_DISK_GIB = 1_048_576.0
MAX_ALLOCATION_RATIO = 64.0


def _invalid(loc: tuple[str | int, ...], message: str, value: object) -> ValidationError:
    """A validation error located at `loc`, so the message names the field itself."""
    error = PydanticCustomError("scenario", "{message}", {"message": message})
    return ValidationError.from_exception_data(
        "Scenario", [InitErrorDetails(type=error, loc=loc, input=value)]
    )


class HostGroup(_Strict):
    prefix: str = Field(min_length=1)
    count: int = Field(ge=1, le=MAX_HOSTS)
    az: str = Field(min_length=1)
    pcpus: int = Field(ge=1, le=MAX_PCPUS)
    ram_gib: float = Field(gt=0, le=MAX_RAM_GIB)
    cpu_allocation_ratio: float = Field(4.0, gt=0, le=MAX_ALLOCATION_RATIO)
    ram_allocation_ratio: float = Field(1.0, gt=0, le=MAX_ALLOCATION_RATIO)
    shared_storage: bool = False


class VmGroup(_Strict):
    prefix: str = Field(min_length=1)
    count: int = Field(ge=1, le=MAX_VMS)
    role: str = Field(min_length=1)
    vcpus: tuple[int, ...]
    ram_gib: tuple[float, ...]
    disk_gib: tuple[float, ...] = (20.0,)
    intensity: Range = Range(min=0.2, max=0.8)
    """Peak busy fraction per vCPU, drawn per VM, times the role profile."""
    dirty_mib_s_per_busy_vcpu: Range = Range(min=4.0, max=24.0)
    az: str | None = None
    """Restrict to one AZ (default: spread over all AZs)."""
    host: str | None = None
    """Pin the initial placement to one host (by full host name)."""
    server_group: str | None = None
    orchestrator: Literal["kubernetes", "consul", "none"] = "none"
    opt_out: bool = False

    # Field validators (not one model validator) so the error names the field, and
    # "after" mode so an empty check does not pile onto an item's own error.
    @field_validator("vcpus")
    @classmethod
    def _vcpus(cls, values: tuple[int, ...]) -> tuple[int, ...]:
        if not values or any(not 1 <= v <= MAX_PCPUS for v in values):
            raise ValueError(f"needs at least one value, each from 1 to {MAX_PCPUS}")
        return values

    @field_validator("ram_gib")
    @classmethod
    def _ram(cls, values: tuple[float, ...]) -> tuple[float, ...]:
        if not values or any(not 0 < v <= MAX_RAM_GIB for v in values):
            raise ValueError(f"needs at least one value, each above 0 and at most {MAX_RAM_GIB:g}")
        return values

    @field_validator("disk_gib")
    @classmethod
    def _disk(cls, values: tuple[float, ...]) -> tuple[float, ...]:
        if not values or any(not 0 <= v <= MAX_DISK_GIB for v in values):
            raise ValueError(f"needs at least one value, each from 0 to {MAX_DISK_GIB:g}")
        return values


class ServerGroupSpec(_Strict):
    name: str = Field(min_length=1)
    policy: Literal["anti-affinity", "affinity", "soft-anti-affinity", "soft-affinity"]


class Scenario(_Strict):
    """A simulated day."""

    story: str = ""
    """One line: what this cluster shape is and why it is in the library."""
    seed: int = Field(1, ge=0)
    duration_h: float = Field(24.0, gt=0, le=24 * 14)
    step_s: float = Field(60.0, ge=1, le=600)
    """Simulation step = agent report interval = planning interval."""
    noise: float = Field(0.05, ge=0, le=1)
    """Standard deviation of per-step demand noise (per vCPU, absolute)."""
    placement: Literal["clustered", "spread", "random", "waves"] = "clustered"
    """Initial placement: 'clustered' packs same-role VMs together (as teams deploying
    a whole service at once often end up), 'spread' round-robins, 'random' is random,
    'waves' puts each group on the next few consecutive hosts until they are full."""
    migration_failure_probability: float = Field(0.01, ge=0, le=1)
    contended_steal: float = Field(0.10, gt=0, le=1)
    """A VM-minute counts as contended when steal is above this while the VM is busy..."""
    busy_load: float = Field(0.60, ge=0, le=1)
    """...i.e. its demand per vCPU is above this. (The report's yardstick; the policy's
    own detection thresholds are in `config.policy`.)"""
    hosts: tuple[HostGroup, ...]
    roles: dict[str, RoleProfile] = Field(min_length=1)
    vms: tuple[VmGroup, ...]
    server_groups: tuple[ServerGroupSpec, ...] = ()
    config: Config = Config()
    """The coordinator configuration to simulate with (same keys as the config file)."""

    @field_validator("hosts", "vms")
    @classmethod
    def _not_empty(cls, values: tuple[object, ...]) -> tuple[object, ...]:
        if not values:
            raise ValueError("needs at least one group")
        return values

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        self._check_sizes()
        azs = {h.az for h in self.hosts}
        host_names = {f"{g.prefix}-{i:03d}" for g in self.hosts for i in range(g.count)}
        groups = {g.name for g in self.server_groups}
        for index, vm in enumerate(self.vms):
            checks: tuple[tuple[bool, str, str, object], ...] = (
                (vm.role not in self.roles, "role", "no profile for this role in roles", vm.role),
                (vm.az is not None and vm.az not in azs, "az", "this AZ has no hosts", vm.az),
                (
                    vm.host is not None and vm.host not in host_names,
                    "host",
                    "no host of that name",
                    vm.host,
                ),
                (
                    vm.server_group is not None and vm.server_group not in groups,
                    "server_group",
                    "not defined in server_groups",
                    vm.server_group,
                ),
            )
            for bad, name, message, value in checks:
                if bad:
                    raise _invalid(("vms", index, name), f"{message} ({value!r})", value)
        return self

    def _check_sizes(self) -> None:
        if self.steps < 1:
            raise _invalid(
                ("duration_h",), f"shorter than one step of {self.step_s:g}s", self.duration_h
            )
        if sum(g.count for g in self.hosts) > MAX_HOSTS:
            raise _invalid(("hosts",), f"more than {MAX_HOSTS} hosts in total", len(self.hosts))
        if sum(g.count for g in self.vms) > MAX_VMS:
            raise _invalid(("vms",), f"more than {MAX_VMS} VMs in total", len(self.vms))
        seen: dict[str, int] = {}
        for index, group in enumerate(self.hosts):
            if group.prefix in seen:
                raise _invalid(
                    ("hosts", index, "prefix"),
                    f"{group.prefix!r} is already used by hosts.{seen[group.prefix]}: "
                    "host names would collide",
                    group.prefix,
                )
            seen[group.prefix] = index

    @property
    def steps(self) -> int:
        return round(self.duration_h * 3600 / self.step_s)


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file (ConfigError naming the field on bad input)."""
    return parse_model(Scenario, read_structured_file(path), str(path))


def reference_scenario(seed: int = 1, hosts_per_az: int = 40, vm_scale: int = 1) -> Scenario:
    """The reference day: 2 AZs × `hosts_per_az` hypervisors, ~1,000 VMs × vm_scale."""
    host_groups = tuple(
        HostGroup(prefix=f"{az}-hv", count=hosts_per_az, az=az, pcpus=32, ram_gib=384)
        for az in ("az1", "az2")
    )
    roles = {
        # lunch traffic, plus the evening
        "web": RoleProfile(
            base=0.12,
            peaks=(
                Peak(hour=12.5, width_h=1.0, height=0.85),
                Peak(hour=22.0, width_h=1.2, height=0.6),
            ),
        ),
        "api": RoleProfile(
            base=0.12,
            peaks=(
                Peak(hour=12.5, width_h=1.2, height=0.5),
                Peak(hour=15.0, width_h=0.9, height=0.85),
            ),
        ),
        "batch": RoleProfile(
            base=0.08,
            peaks=(
                Peak(hour=22.0, width_h=1.0, height=0.9),
                Peak(hour=3.0, width_h=1.5, height=0.4),
            ),
        ),
        "stream": RoleProfile(base=0.15, peaks=(Peak(hour=22.0, width_h=1.5, height=0.75),)),
        "db": RoleProfile(base=0.3, peaks=(Peak(hour=15.0, width_h=3.0, height=0.3),)),
        "cache": RoleProfile(base=0.2, peaks=(Peak(hour=12.5, width_h=2.0, height=0.3),)),
    }

    def group(
        prefix: str,
        count: int,
        role: str,
        vcpus: tuple[int, ...],
        ram: tuple[float, ...],
        disk: tuple[float, ...],
        lo: float,
        hi: float,
        orch: str,
    ) -> VmGroup:
        return VmGroup.model_validate(
            {
                "prefix": prefix,
                "count": count * vm_scale,
                "role": role,
                "vcpus": vcpus,
                "ram_gib": ram,
                "disk_gib": disk,
                "intensity": {"min": lo, "max": hi},
                "orchestrator": orch,
            }
        )

    vms = (
        group("web", 260, "web", (2, 4, 4, 8), (4, 8, 8, 16), (20, 40), 0.35, 0.8, "kubernetes"),
        group("api", 220, "api", (2, 4, 8), (4, 8, 16), (20, 40), 0.35, 0.8, "kubernetes"),
        group("batch", 160, "batch", (4, 8, 16), (8, 16, 32), (40, 100), 0.4, 0.85, "none"),
        group("stream", 140, "stream", (4, 8), (8, 16, 32), (40, 80), 0.35, 0.75, "consul"),
        # Databases: big RAM and some very large local disks (expensive to move).
        group("db", 100, "db", (4, 8, 16), (32, 64, 128), (200, 500, 2000), 0.2, 0.5, "consul"),
        group("cache", 120, "cache", (2, 4), (16, 32), (20,), 0.15, 0.4, "none"),
    )
    # The reference cloud has a 25 GbE migration NIC per host (2,980 MiB/s) and a
    # fabric carrying 5,000 MiB/s: a budget of 4,000 MiB/s in grants of 1,000 (see
    # LimitsConfig). Config() defaults stay more conservative for clouds we know
    # nothing about.
    network = Config().model_copy(
        update={"limits": LimitsConfig(link_mib_s=2980.0, fabric_mib_s=5000.0)}
    )
    return Scenario(seed=seed, hosts=host_groups, roles=roles, vms=vms, config=network)
