"""A per-AZ array view of the round's hosts, to rule out a whole AZ at once.

`choose_target` looks at every host of the AZ for every candidate, in Python. That
is fine while some host can take the VM (only a handful of moves fit under the
caps), but when an AZ is full every contended VM ranks every host and finds
nothing: at 10,000 hosts and 7,000 contended VMs that took a minute per round.
Here the same filters run as numpy comparisons on values copied from the round
state (never recomputed, so the floats are the very same), which answers "is any
host eligible?" at C speed; when none is, only the few rejected hosts a Skipped
reason quotes are scored in Python. Whenever some host is eligible the caller uses
the ordinary path, so plans are identical either way (a test checks this).

Purely computational, no side effects.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from coordinator.config import Config
from coordinator.model import ClusterSnapshot, GroupPolicy, Host, Vm
from coordinator.policy.detect import is_fresh
from coordinator.policy.scratch import RoundState
from coordinator.policy.targets import (
    REJECTED_KEPT,
    TargetChoice,
    fit_blocker,
    host_blocker,
    score,
)

# Below this many hosts in an AZ the plain loop is as fast: no arrays.
MIN_HOSTS = 64

_Floats = npt.NDArray[np.float64]
_Bools = npt.NDArray[np.bool_]


class AzIndex:
    """The hosts of one AZ, in `by_az` order, as arrays kept in step with the round."""

    def __init__(
        self, hosts: list[Host], snapshot: ClusterSnapshot, config: Config, state: RoundState
    ) -> None:
        self.hosts = hosts
        self.position = {h.name: i for i, h in enumerate(hosts)}
        self.pcpus = np.array([h.pcpus for h in hosts], dtype=np.float64)
        self.vcpu_cap = np.array([h.pcpus * h.cpu_allocation_ratio for h in hosts])
        self.ram_cap = np.array([h.ram_mib * h.ram_allocation_ratio for h in hosts])
        n = len(hosts)
        self.vcpus, self.ram, self.demand, self.steal = (np.zeros(n) for _ in range(4))
        self.open = np.zeros(n, dtype=np.bool_)  # host_blocker is None
        self._cut: tuple[_Ints, _Ints] | None = None
        self._snapshot, self._config, self._state = snapshot, config, state
        self._static_ok = np.array([self._statically_open(h) for h in hosts], dtype=np.bool_)
        for i in range(n):
            self._copy(i)

    def _statically_open(self, host: Host) -> bool:
        snap = self._snapshot
        return (
            host.enabled
            and host.up
            and is_fresh(host.last_report_at, snap.now, self._config.policy)
            and not snap.quarantined_targets.get(host.name, 0.0) > snap.now
        )

    def _copy(self, i: int) -> None:
        host = self.hosts[i]
        load = self._state.load(host.name)
        self.vcpus[i], self.ram[i] = load.vcpus, load.ram_mib
        self.demand[i], self.steal[i] = load.target_demand, load.steal
        self.open[i] = bool(self._static_ok[i]) and (
            host_blocker(host, load, self._snapshot, self._config, self._state) is None
        )

    def refresh(self, *names: str) -> None:
        """Re-copy hosts whose load or slots a chosen move changed."""
        for name in names:
            i = self.position.get(name)
            if i is not None:
                self._copy(i)
                self._cut = None

    def eligible(self, vm: Vm) -> _Bools:
        """The mask of hosts `fit_blocker` and `host_blocker` would both let through."""
        fill_max = self._config.policy.target_cpu_fill_max
        mask = self.open & (self.vcpus + vm.vcpus <= self.vcpu_cap)
        mask &= self.ram + vm.ram_mib <= self.ram_cap
        mask &= (self.demand + vm.metrics.cpu_demand) / self.pcpus <= fill_max
        source = self.position.get(vm.host)
        if source is not None:
            mask[source] = False
        group = self._snapshot.server_groups.get(vm.server_group) if vm.server_group else None
        if group is not None and group.policy is GroupPolicy.ANTI_AFFINITY:
            for name, count in self._state.group_hosts.get(group.id, {}).items():
                i = self.position.get(name)
                if i is not None and count > 0:
                    mask[i] = False
        return mask

    def nobody(self, vm: Vm) -> TargetChoice:
        """`choose_target`'s answer when no host is eligible: the best rejected ones
        (by steal, then headroom, ties in AZ order, as its stable sort keeps them)."""
        headroom: _Floats = self.pcpus - (self.demand + vm.metrics.cpu_demand)
        kept = []
        if self._cut is None:  # steal does not depend on the VM: cut once per change
            self._cut = first_cut(self.steal, REJECTED_KEPT)
        for i in smallest(self.steal, -headroom, REJECTED_KEPT, self._cut):
            host = self.hosts[i]
            load = self._state.load(host.name)
            why = host_blocker(host, load, self._snapshot, self._config, self._state)
            why = why or fit_blocker(vm, host, load, self._snapshot, self._config, self._state)
            kept.append(score(vm, host, load, False, why or ""))
        return TargetChoice(chosen=None, considered=tuple(kept))


_Ints = npt.NDArray[np.intp]


def first_cut(primary: _Floats, k: int) -> tuple[_Ints, _Ints]:
    """The rows with a primary below the k-th smallest (fewer than k, all kept) and
    the rows tied at it (which compete on the secondary key)."""
    rows = np.arange(len(primary))
    if len(rows) <= k:
        return rows, rows[:0]
    kth = np.partition(primary, k - 1)[k - 1]
    return rows[primary < kth], rows[primary == kth]


def smallest(
    primary: _Floats, secondary: _Floats, k: int, cut: tuple[_Ints, _Ints] | None = None
) -> list[int]:
    """Positions of the k smallest by (primary, secondary, position), in that order.

    The same as the first k of a full lexsort, in O(n): see `first_cut`; the tied
    rows are cut again on the secondary key; the survivors (a few, unless many tie
    on both keys) are sorted. `cut` may be passed in when `primary` has not changed.
    """
    strict, ties = cut if cut is not None else first_cut(primary, k)
    need = k - len(strict)
    if need > 0 and len(ties) > need:
        tied = secondary[ties]
        ties = ties[tied <= np.partition(tied, need - 1)[need - 1]]
    rows = np.concatenate((strict, ties))
    order = np.lexsort((rows, secondary[rows], primary[rows]))
    return [int(i) for i in rows[order[:k]]]


class AzIndexes:
    """AzIndex per AZ, built on first use in a round."""

    def __init__(
        self,
        by_az: Mapping[str, list[Host]],
        snapshot: ClusterSnapshot,
        config: Config,
        state: RoundState,
        min_hosts: int = MIN_HOSTS,
    ) -> None:
        self._by_az, self._snapshot, self._config, self._state = by_az, snapshot, config, state
        self._min_hosts = min_hosts
        self._built: dict[str, AzIndex | None] = {}

    def get(self, az: str) -> AzIndex | None:
        if az not in self._built:
            hosts = self._by_az.get(az, [])
            big = len(hosts) >= self._min_hosts and len(hosts) > 0
            self._built[az] = (
                AzIndex(hosts, self._snapshot, self._config, self._state) if big else None
            )
        return self._built[az]

    def refresh(self, *names: str) -> None:
        for index in self._built.values():
            if index is not None:
                index.refresh(*names)
