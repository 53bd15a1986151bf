"""The cluster model: immutable values the policy reasons about.

Everything here is a frozen dataclass. A `ClusterSnapshot` is what the policy sees at
one instant; it is built by `coordinator.state` (from agent telemetry and Nova
inventory) or by the simulator, and never mutated afterwards. Times are seconds on
the snapshot's own clock (`ClusterSnapshot.now`): the policy never reads a clock.

Units: CPU in vCPUs/pCPUs (floats where they are demand), memory in MiB, disk in GiB,
bandwidth in MiB/s, ratios in [0, 1].
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


class Orchestrator(StrEnum):
    """The orchestrators this code base ships a detacher for.

    A VM's `orchestrator` is the tag as its metadata spells it (a plain string): the
    service holds a registry of detachers keyed by tag, so adding one needs no change
    here, and a tag nobody registered makes the VM unmovable (`Vm.refusal`)."""

    KUBERNETES = "kubernetes"
    CONSUL = "consul"
    NONE = "none"


class GroupPolicy(StrEnum):
    """Nova server-group policies."""

    ANTI_AFFINITY = "anti-affinity"
    AFFINITY = "affinity"
    SOFT_ANTI_AFFINITY = "soft-anti-affinity"
    SOFT_AFFINITY = "soft-affinity"


@dataclass(frozen=True, slots=True)
class Host:
    """A hypervisor as the policy sees it."""

    name: str
    az: str
    pcpus: int
    ram_mib: int
    cpu_allocation_ratio: float = 4.0
    ram_allocation_ratio: float = 1.0
    enabled: bool = True
    up: bool = True
    # Snapshot-clock time of the agent's last report; None = never reported.
    last_report_at: float | None = None
    # VMs on this host use shared storage (no disk copy on live migration).
    shared_storage: bool = False


@dataclass(frozen=True, slots=True)
class VmMetrics:
    """Smoothed telemetry of one VM (see coordinator.state for how it is folded)."""

    steal: float = 0.0  # stolen fraction of the VM's vCPU time, per vCPU
    load: float = 0.0  # runnable demand per vCPU (1.0 = every vCPU busy)
    cpu_demand: float = 0.0  # vCPUs the VM wants to run (used + stolen)
    dirty_rate_mib_s: float = 0.0  # guest memory dirtying rate estimate
    # Seconds covered by the consecutive readings with steal AND load above the
    # detection thresholds (0 after a calm one): "sustained" is a duration, whatever
    # the agents' report interval.
    contended_s: float = 0.0
    sampled_at: float | None = None  # snapshot-clock time of the newest sample
    # How fast cpu_demand is changing, vCPUs per second (smoothed; < 0 = falling).
    demand_trend: float = 0.0
    # The highest cpu_demand of its readings, fading by half every
    # `policy.peak_half_life_s`: a host between its tenants' daily peaks looks idle
    # now, not at their next peak.
    peak_demand: float = 0.0

    @property
    def demand_at_peak(self) -> float:
        """The vCPUs it wants at its remembered peak, never less than it wants now (a
        VmMetrics built without a peak has none)."""
        return max(self.cpu_demand, self.peak_demand)


@dataclass(frozen=True, slots=True)
class Vm:
    """A Nova server joined with its telemetry."""

    uuid: str
    name: str
    host: str
    vcpus: int
    ram_mib: int
    disk_gib: float = 0.0
    role: str = ""
    server_group: str = ""  # server-group id, "" = none
    orchestrator: str = Orchestrator.NONE
    orchestrator_ref: str = ""  # Kubernetes node name or Consul agent address
    # The IP addresses Nova lists for it: a Consul agent is this VM's only if it
    # advertises one of them (the ref is tenant-writable, the addresses are not).
    addresses: tuple[str, ...] = ()
    opt_out: bool = False
    metrics: VmMetrics = field(default_factory=VmMetrics)
    migrating: bool = False
    cooldown_until: float = 0.0  # no automatic move before this time
    quarantined_until: float = 0.0  # a failed / useless move parks the VM until then
    known_to_nova: bool = True
    reported_by_agent: bool = True
    # Nova expects its domain to be running (not SHUTOFF, PAUSED, SHELVED, ...): one
    # with no telemetry then has unknown demand, not none.
    running: bool = True
    # Why the data this VM was built from cannot be trusted to move it (an unknown
    # orchestrator tag, ...): set where the data entered, never moved while set.
    refusal: str = ""
    parked_reason: str = ""  # why it is quarantined, for explain
    # Agents on hosts where Nova does not place the VM (nor migrates it to) that report
    # it: their telemetry is ignored, and the VM is not moved while it lasts.
    telemetry_from_wrong_host: tuple[str, ...] = ()


def mean_steal(vms: Iterable[Vm]) -> float:
    """vCPU-weighted mean steal ratio of these VMs (0 when there are none)."""
    stolen = vcpus = 0.0
    for vm in vms:
        stolen += vm.metrics.steal * vm.vcpus
        vcpus += vm.vcpus
    return stolen / vcpus if vcpus else 0.0


@dataclass(frozen=True, slots=True)
class ServerGroup:
    id: str
    name: str
    policy: GroupPolicy
    members: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class InFlight:
    """A migration already under way: while Nova may still copy it (`copying`) it holds
    caps and bandwidth; once Nova is done with it (verifying, reattaching) only its VM
    and hosts are still its own."""

    vm_uuid: str
    source: str
    target: str
    az: str
    bandwidth_mib_s: float
    started_at: float
    # False once Nova's part is over: a reattach that waits on an unreachable Consul
    # agent for hours must not hold a migration slot and a grant nothing uses.
    copying: bool = True


@dataclass(frozen=True, slots=True)
class Bookkeeping:
    """What the journal adds to a snapshot: running migrations, cooldowns, parked VMs
    and targets (with why, for explain)."""

    in_flight: tuple[InFlight, ...] = ()
    cooldown_until: Mapping[str, float] = field(default_factory=dict)
    quarantined_vms: Mapping[str, float] = field(default_factory=dict)
    quarantined_targets: Mapping[str, float] = field(default_factory=dict)
    park_reasons: Mapping[str, str] = field(default_factory=dict)  # VM uuid -> why
    # VM → target of a migration that finished after the inventory was fetched: its
    # telemetry counts from there until Nova's placement (the next refresh) says so too.
    moved_to: Mapping[str, str] = field(default_factory=dict)
    # Host → when the newest migration that left it ended DONE (ClusterSnapshot.departed_at).
    departed_at: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    """Everything the policy may read, frozen at `now`."""

    now: float
    hosts: Mapping[str, Host]
    vms: Mapping[str, Vm]
    server_groups: Mapping[str, ServerGroup] = field(default_factory=lambda: MappingProxyType({}))
    in_flight: tuple[InFlight, ...] = ()
    # Hosts quarantined as targets (a move there did not relieve steal), with expiry.
    quarantined_targets: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    # Hosts earlier rounds found pressed (clogged VMs, demand over the pCPUs), with
    # when they last did: the controller's memory, so relief goes on while such a host
    # stays over even when its VMs' own evidence flickers below the thresholds.
    pressed_at: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    # Hosts a migration left within the cooldown window, with when the newest one ended:
    # steal its VMs showed before then was the excess that left, not evidence of now.
    departed_at: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    @staticmethod
    def build(
        now: float,
        hosts: list[Host] | tuple[Host, ...],
        vms: list[Vm] | tuple[Vm, ...],
        server_groups: list[ServerGroup] | tuple[ServerGroup, ...] = (),
        in_flight: tuple[InFlight, ...] = (),
        quarantined_targets: Mapping[str, float] | None = None,
        departed_at: Mapping[str, float] | None = None,
    ) -> ClusterSnapshot:
        """Index lists by key; the mappings are read-only views."""
        return ClusterSnapshot(
            now=now,
            hosts=MappingProxyType({h.name: h for h in hosts}),
            vms=MappingProxyType({v.uuid: v for v in vms}),
            server_groups=MappingProxyType({g.id: g for g in server_groups}),
            in_flight=in_flight,
            quarantined_targets=MappingProxyType(dict(quarantined_targets or {})),
            departed_at=MappingProxyType(dict(departed_at or {})),
        )

    @property
    def bandwidth_in_use(self) -> float:
        """Sum of the bandwidth caps granted to the migrations in flight (MiB/s)."""
        return sum(flight.bandwidth_mib_s for flight in self.in_flight if flight.copying)


@dataclass(frozen=True, slots=True)
class TargetScore:
    """How one candidate target fared for one VM (kept for `explain`)."""

    host: str
    eligible: bool
    rejected_because: str = ""
    steal: float = 0.0
    same_role_vms: int = 0
    headroom_cpus: float = 0.0
    predicted_demand_ratio: float = 0.0
    # pCPUs left when its VMs and this one are all at their remembered peaks
    # (< 0: over at its peaks, ranked after every host that is not).
    peak_headroom_cpus: float = 0.0


@dataclass(frozen=True, slots=True)
class MoveCost:
    """What a live migration is predicted to cost."""

    gib_to_move: float
    seconds: float
    converges: bool


@dataclass(frozen=True, slots=True)
class Move:
    """One planned live migration, with the reasons an operator can ask for."""

    vm_uuid: str
    vm_name: str
    source: str
    target: str
    az: str
    bandwidth_mib_s: float
    steal: float
    load: float
    cost: MoveCost
    relief: float  # expected stolen vCPUs relieved (VM's own plus its source's others)
    targets: tuple[TargetScore, ...]  # chosen first, then the best rejected ones
    reason: str

    @property
    def relief_per_gib(self) -> float:
        return self.relief / max(self.cost.gib_to_move, 1e-9)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A detected candidate the plan did not move, and why."""

    vm_uuid: str
    vm_name: str
    reason: str


@dataclass(frozen=True, slots=True)
class Plan:
    """The policy's answer for one snapshot: moves in the order to start them."""

    now: float
    moves: tuple[Move, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    # Hosts this round found pressed on its own evidence (see ClusterSnapshot.pressed_at).
    pressed: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.moves
