from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("hosts_total", "hosts_up", "hosts_stale", "vms_total", "vms_contended", "migrations_running", "migrations_queued", "paused", "paused_reason", "leader", "leader_identity", "cluster_steal", "bandwidth_in_use_mib_s", "bandwidth_budget_mib_s", "snapshot_unix_ns", "version", "paused_by", "paused_unix_ns", "migrations_detached_overdue", "detached_seconds_max", "migrations_retrying", "vms_parked")
    HOSTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    HOSTS_UP_FIELD_NUMBER: _ClassVar[int]
    HOSTS_STALE_FIELD_NUMBER: _ClassVar[int]
    VMS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    VMS_CONTENDED_FIELD_NUMBER: _ClassVar[int]
    MIGRATIONS_RUNNING_FIELD_NUMBER: _ClassVar[int]
    MIGRATIONS_QUEUED_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    PAUSED_REASON_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    LEADER_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_STEAL_FIELD_NUMBER: _ClassVar[int]
    BANDWIDTH_IN_USE_MIB_S_FIELD_NUMBER: _ClassVar[int]
    BANDWIDTH_BUDGET_MIB_S_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PAUSED_BY_FIELD_NUMBER: _ClassVar[int]
    PAUSED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    MIGRATIONS_DETACHED_OVERDUE_FIELD_NUMBER: _ClassVar[int]
    DETACHED_SECONDS_MAX_FIELD_NUMBER: _ClassVar[int]
    MIGRATIONS_RETRYING_FIELD_NUMBER: _ClassVar[int]
    VMS_PARKED_FIELD_NUMBER: _ClassVar[int]
    hosts_total: int
    hosts_up: int
    hosts_stale: int
    vms_total: int
    vms_contended: int
    migrations_running: int
    migrations_queued: int
    paused: bool
    paused_reason: str
    leader: bool
    leader_identity: str
    cluster_steal: float
    bandwidth_in_use_mib_s: float
    bandwidth_budget_mib_s: float
    snapshot_unix_ns: int
    version: str
    paused_by: str
    paused_unix_ns: int
    migrations_detached_overdue: int
    detached_seconds_max: float
    migrations_retrying: int
    vms_parked: int
    def __init__(self, hosts_total: _Optional[int] = ..., hosts_up: _Optional[int] = ..., hosts_stale: _Optional[int] = ..., vms_total: _Optional[int] = ..., vms_contended: _Optional[int] = ..., migrations_running: _Optional[int] = ..., migrations_queued: _Optional[int] = ..., paused: _Optional[bool] = ..., paused_reason: _Optional[str] = ..., leader: _Optional[bool] = ..., leader_identity: _Optional[str] = ..., cluster_steal: _Optional[float] = ..., bandwidth_in_use_mib_s: _Optional[float] = ..., bandwidth_budget_mib_s: _Optional[float] = ..., snapshot_unix_ns: _Optional[int] = ..., version: _Optional[str] = ..., paused_by: _Optional[str] = ..., paused_unix_ns: _Optional[int] = ..., migrations_detached_overdue: _Optional[int] = ..., detached_seconds_max: _Optional[float] = ..., migrations_retrying: _Optional[int] = ..., vms_parked: _Optional[int] = ...) -> None: ...

class ListHostsRequest(_message.Message):
    __slots__ = ("availability_zone", "page_size", "page_token")
    AVAILABILITY_ZONE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    availability_zone: str
    page_size: int
    page_token: str
    def __init__(self, availability_zone: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class HostView(_message.Message):
    __slots__ = ("name", "availability_zone", "pcpus", "cpu_demand", "steal", "vms", "agent_age_s", "enabled", "up", "fresh", "ram_mib", "ram_used_mib", "vcpus_used")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_ZONE_FIELD_NUMBER: _ClassVar[int]
    PCPUS_FIELD_NUMBER: _ClassVar[int]
    CPU_DEMAND_FIELD_NUMBER: _ClassVar[int]
    STEAL_FIELD_NUMBER: _ClassVar[int]
    VMS_FIELD_NUMBER: _ClassVar[int]
    AGENT_AGE_S_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    FRESH_FIELD_NUMBER: _ClassVar[int]
    RAM_MIB_FIELD_NUMBER: _ClassVar[int]
    RAM_USED_MIB_FIELD_NUMBER: _ClassVar[int]
    VCPUS_USED_FIELD_NUMBER: _ClassVar[int]
    name: str
    availability_zone: str
    pcpus: int
    cpu_demand: float
    steal: float
    vms: int
    agent_age_s: float
    enabled: bool
    up: bool
    fresh: bool
    ram_mib: int
    ram_used_mib: int
    vcpus_used: int
    def __init__(self, name: _Optional[str] = ..., availability_zone: _Optional[str] = ..., pcpus: _Optional[int] = ..., cpu_demand: _Optional[float] = ..., steal: _Optional[float] = ..., vms: _Optional[int] = ..., agent_age_s: _Optional[float] = ..., enabled: _Optional[bool] = ..., up: _Optional[bool] = ..., fresh: _Optional[bool] = ..., ram_mib: _Optional[int] = ..., ram_used_mib: _Optional[int] = ..., vcpus_used: _Optional[int] = ...) -> None: ...

class ListHostsResponse(_message.Message):
    __slots__ = ("hosts", "next_page_token", "total_size")
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    hosts: _containers.RepeatedCompositeFieldContainer[HostView]
    next_page_token: str
    total_size: int
    def __init__(self, hosts: _Optional[_Iterable[_Union[HostView, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class ListVmsRequest(_message.Message):
    __slots__ = ("host", "availability_zone", "role", "sort_by", "limit", "page_size", "page_token")
    HOST_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_ZONE_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SORT_BY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    host: str
    availability_zone: str
    role: str
    sort_by: str
    limit: int
    page_size: int
    page_token: str
    def __init__(self, host: _Optional[str] = ..., availability_zone: _Optional[str] = ..., role: _Optional[str] = ..., sort_by: _Optional[str] = ..., limit: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class VmView(_message.Message):
    __slots__ = ("uuid", "name", "host", "availability_zone", "role", "vcpus", "ram_mib", "disk_gib", "steal", "load", "contended", "orchestrator", "state", "known_to_nova", "reported_by_agent")
    UUID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_ZONE_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    VCPUS_FIELD_NUMBER: _ClassVar[int]
    RAM_MIB_FIELD_NUMBER: _ClassVar[int]
    DISK_GIB_FIELD_NUMBER: _ClassVar[int]
    STEAL_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    CONTENDED_FIELD_NUMBER: _ClassVar[int]
    ORCHESTRATOR_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    KNOWN_TO_NOVA_FIELD_NUMBER: _ClassVar[int]
    REPORTED_BY_AGENT_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    name: str
    host: str
    availability_zone: str
    role: str
    vcpus: int
    ram_mib: int
    disk_gib: float
    steal: float
    load: float
    contended: bool
    orchestrator: str
    state: str
    known_to_nova: bool
    reported_by_agent: bool
    def __init__(self, uuid: _Optional[str] = ..., name: _Optional[str] = ..., host: _Optional[str] = ..., availability_zone: _Optional[str] = ..., role: _Optional[str] = ..., vcpus: _Optional[int] = ..., ram_mib: _Optional[int] = ..., disk_gib: _Optional[float] = ..., steal: _Optional[float] = ..., load: _Optional[float] = ..., contended: _Optional[bool] = ..., orchestrator: _Optional[str] = ..., state: _Optional[str] = ..., known_to_nova: _Optional[bool] = ..., reported_by_agent: _Optional[bool] = ...) -> None: ...

class ListVmsResponse(_message.Message):
    __slots__ = ("vms", "next_page_token", "total_size")
    VMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    vms: _containers.RepeatedCompositeFieldContainer[VmView]
    next_page_token: str
    total_size: int
    def __init__(self, vms: _Optional[_Iterable[_Union[VmView, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class ListMigrationsRequest(_message.Message):
    __slots__ = ("running_only", "limit", "page_size", "page_token")
    RUNNING_ONLY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    running_only: bool
    limit: int
    page_size: int
    page_token: str
    def __init__(self, running_only: _Optional[bool] = ..., limit: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class MigrationView(_message.Message):
    __slots__ = ("id", "vm_uuid", "vm_name", "source", "target", "state", "outcome", "created_unix_ns", "finished_unix_ns", "gib_moved", "steal_before", "steal_after", "bandwidth_mib_s", "manual", "last_error", "attempts", "retry_unix_ns", "detached_seconds")
    ID_FIELD_NUMBER: _ClassVar[int]
    VM_UUID_FIELD_NUMBER: _ClassVar[int]
    VM_NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    GIB_MOVED_FIELD_NUMBER: _ClassVar[int]
    STEAL_BEFORE_FIELD_NUMBER: _ClassVar[int]
    STEAL_AFTER_FIELD_NUMBER: _ClassVar[int]
    BANDWIDTH_MIB_S_FIELD_NUMBER: _ClassVar[int]
    MANUAL_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    RETRY_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    DETACHED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    vm_uuid: str
    vm_name: str
    source: str
    target: str
    state: str
    outcome: str
    created_unix_ns: int
    finished_unix_ns: int
    gib_moved: float
    steal_before: float
    steal_after: float
    bandwidth_mib_s: int
    manual: bool
    last_error: str
    attempts: int
    retry_unix_ns: int
    detached_seconds: float
    def __init__(self, id: _Optional[str] = ..., vm_uuid: _Optional[str] = ..., vm_name: _Optional[str] = ..., source: _Optional[str] = ..., target: _Optional[str] = ..., state: _Optional[str] = ..., outcome: _Optional[str] = ..., created_unix_ns: _Optional[int] = ..., finished_unix_ns: _Optional[int] = ..., gib_moved: _Optional[float] = ..., steal_before: _Optional[float] = ..., steal_after: _Optional[float] = ..., bandwidth_mib_s: _Optional[int] = ..., manual: _Optional[bool] = ..., last_error: _Optional[str] = ..., attempts: _Optional[int] = ..., retry_unix_ns: _Optional[int] = ..., detached_seconds: _Optional[float] = ...) -> None: ...

class ListMigrationsResponse(_message.Message):
    __slots__ = ("migrations", "next_page_token", "total_size")
    MIGRATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    migrations: _containers.RepeatedCompositeFieldContainer[MigrationView]
    next_page_token: str
    total_size: int
    def __init__(self, migrations: _Optional[_Iterable[_Union[MigrationView, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class PreviewPlanRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TargetScore(_message.Message):
    __slots__ = ("host", "eligible", "rejected_because", "steal", "same_role_vms", "headroom_cpus", "predicted_demand_ratio", "peak_headroom_cpus")
    HOST_FIELD_NUMBER: _ClassVar[int]
    ELIGIBLE_FIELD_NUMBER: _ClassVar[int]
    REJECTED_BECAUSE_FIELD_NUMBER: _ClassVar[int]
    STEAL_FIELD_NUMBER: _ClassVar[int]
    SAME_ROLE_VMS_FIELD_NUMBER: _ClassVar[int]
    HEADROOM_CPUS_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_DEMAND_RATIO_FIELD_NUMBER: _ClassVar[int]
    PEAK_HEADROOM_CPUS_FIELD_NUMBER: _ClassVar[int]
    host: str
    eligible: bool
    rejected_because: str
    steal: float
    same_role_vms: int
    headroom_cpus: float
    predicted_demand_ratio: float
    peak_headroom_cpus: float
    def __init__(self, host: _Optional[str] = ..., eligible: _Optional[bool] = ..., rejected_because: _Optional[str] = ..., steal: _Optional[float] = ..., same_role_vms: _Optional[int] = ..., headroom_cpus: _Optional[float] = ..., predicted_demand_ratio: _Optional[float] = ..., peak_headroom_cpus: _Optional[float] = ...) -> None: ...

class PlannedMove(_message.Message):
    __slots__ = ("vm_uuid", "vm_name", "source", "target", "bandwidth_mib_s", "steal", "load", "gib_to_move", "seconds_estimate", "relief_per_gib", "targets", "reason")
    VM_UUID_FIELD_NUMBER: _ClassVar[int]
    VM_NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    BANDWIDTH_MIB_S_FIELD_NUMBER: _ClassVar[int]
    STEAL_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    GIB_TO_MOVE_FIELD_NUMBER: _ClassVar[int]
    SECONDS_ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    RELIEF_PER_GIB_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    vm_uuid: str
    vm_name: str
    source: str
    target: str
    bandwidth_mib_s: int
    steal: float
    load: float
    gib_to_move: float
    seconds_estimate: float
    relief_per_gib: float
    targets: _containers.RepeatedCompositeFieldContainer[TargetScore]
    reason: str
    def __init__(self, vm_uuid: _Optional[str] = ..., vm_name: _Optional[str] = ..., source: _Optional[str] = ..., target: _Optional[str] = ..., bandwidth_mib_s: _Optional[int] = ..., steal: _Optional[float] = ..., load: _Optional[float] = ..., gib_to_move: _Optional[float] = ..., seconds_estimate: _Optional[float] = ..., relief_per_gib: _Optional[float] = ..., targets: _Optional[_Iterable[_Union[TargetScore, _Mapping]]] = ..., reason: _Optional[str] = ...) -> None: ...

class PlanResponse(_message.Message):
    __slots__ = ("moves", "skipped", "paused")
    MOVES_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    moves: _containers.RepeatedCompositeFieldContainer[PlannedMove]
    skipped: _containers.RepeatedCompositeFieldContainer[SkippedCandidate]
    paused: bool
    def __init__(self, moves: _Optional[_Iterable[_Union[PlannedMove, _Mapping]]] = ..., skipped: _Optional[_Iterable[_Union[SkippedCandidate, _Mapping]]] = ..., paused: _Optional[bool] = ...) -> None: ...

class SkippedCandidate(_message.Message):
    __slots__ = ("vm_uuid", "vm_name", "reason")
    VM_UUID_FIELD_NUMBER: _ClassVar[int]
    VM_NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    vm_uuid: str
    vm_name: str
    reason: str
    def __init__(self, vm_uuid: _Optional[str] = ..., vm_name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("vm",)
    VM_FIELD_NUMBER: _ClassVar[int]
    vm: str
    def __init__(self, vm: _Optional[str] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("vm_uuid", "vm_name", "verdict", "reasons", "move", "history")
    VM_UUID_FIELD_NUMBER: _ClassVar[int]
    VM_NAME_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    MOVE_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    vm_uuid: str
    vm_name: str
    verdict: str
    reasons: _containers.RepeatedScalarFieldContainer[str]
    move: PlannedMove
    history: _containers.RepeatedCompositeFieldContainer[MigrationView]
    def __init__(self, vm_uuid: _Optional[str] = ..., vm_name: _Optional[str] = ..., verdict: _Optional[str] = ..., reasons: _Optional[_Iterable[str]] = ..., move: _Optional[_Union[PlannedMove, _Mapping]] = ..., history: _Optional[_Iterable[_Union[MigrationView, _Mapping]]] = ...) -> None: ...

class MigrateRequest(_message.Message):
    __slots__ = ("vm", "target_host", "force")
    VM_FIELD_NUMBER: _ClassVar[int]
    TARGET_HOST_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    vm: str
    target_host: str
    force: bool
    def __init__(self, vm: _Optional[str] = ..., target_host: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class MigrateResponse(_message.Message):
    __slots__ = ("migration_id", "target", "message")
    MIGRATION_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    migration_id: str
    target: str
    message: str
    def __init__(self, migration_id: _Optional[str] = ..., target: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class PauseRequest(_message.Message):
    __slots__ = ("reason", "who")
    REASON_FIELD_NUMBER: _ClassVar[int]
    WHO_FIELD_NUMBER: _ClassVar[int]
    reason: str
    who: str
    def __init__(self, reason: _Optional[str] = ..., who: _Optional[str] = ...) -> None: ...

class ResumeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PauseResponse(_message.Message):
    __slots__ = ("paused",)
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    paused: bool
    def __init__(self, paused: _Optional[bool] = ...) -> None: ...
