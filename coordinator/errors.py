"""The coordinator's exception tree. Adapters wrap their library's errors in these.

StealbalancerError
├── ConfigError                      (coordinator.config; a ValueError)
├── ComputeError                     Nova said no, or could not be reached
│   ├── ComputeUnavailable           5xx, timeouts, connection refused
│   ├── NoValidHost                  400: scheduler found no host / host unknown
│   ├── TaskStateConflict            409: the server is busy (another task runs)
│   ├── ComputeForbidden             403: policy forbids the call
│   └── ServerNotFound               404
├── HypervisorError                  the agent link
│   ├── AgentNotConnected            no live stream from that host
│   └── AgentCommandFailed           the agent ran the command and libvirt said no
└── DetachError                      an orchestrator would not let go / take back
    ├── DetachRefused                e.g. a pod with no controller, a blocking PDB
    ├── DetachTimeout                pods did not leave within the global timeout
    └── OrchestratorUnreachable      API server / Consul agent cannot be reached
"""

from __future__ import annotations


class StealbalancerError(Exception):
    """Base of every error this project raises on purpose."""


class ComputeError(StealbalancerError):
    pass


class ComputeUnavailable(ComputeError):
    pass


class NoValidHost(ComputeError):
    pass


class TaskStateConflict(ComputeError):
    pass


class ComputeForbidden(ComputeError):
    pass


class ServerNotFound(ComputeError):
    pass


class HypervisorError(StealbalancerError):
    pass


class AgentNotConnected(HypervisorError):
    pass


class AgentCommandFailed(HypervisorError):
    pass


class DetachError(StealbalancerError):
    pass


class DetachRefused(DetachError):
    pass


class DetachTimeout(DetachError):
    pass


class OrchestratorUnreachable(DetachError):
    pass
