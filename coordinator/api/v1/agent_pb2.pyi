from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StealSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STEAL_SOURCE_UNSPECIFIED: _ClassVar[StealSource]
    STEAL_SOURCE_LIBVIRT_DELAY: _ClassVar[StealSource]
    STEAL_SOURCE_SCHEDSTAT: _ClassVar[StealSource]
    STEAL_SOURCE_SIMULATED: _ClassVar[StealSource]

class LoadSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOAD_SOURCE_UNSPECIFIED: _ClassVar[LoadSource]
    LOAD_SOURCE_GUEST_AGENT: _ClassVar[LoadSource]
    LOAD_SOURCE_HOST_ESTIMATE: _ClassVar[LoadSource]
    LOAD_SOURCE_SIMULATED: _ClassVar[LoadSource]
STEAL_SOURCE_UNSPECIFIED: StealSource
STEAL_SOURCE_LIBVIRT_DELAY: StealSource
STEAL_SOURCE_SCHEDSTAT: StealSource
STEAL_SOURCE_SIMULATED: StealSource
LOAD_SOURCE_UNSPECIFIED: LoadSource
LOAD_SOURCE_GUEST_AGENT: LoadSource
LOAD_SOURCE_HOST_ESTIMATE: LoadSource
LOAD_SOURCE_SIMULATED: LoadSource

class AgentMessage(_message.Message):
    __slots__ = ("register", "report", "command_result")
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    COMMAND_RESULT_FIELD_NUMBER: _ClassVar[int]
    register: Register
    report: HostReport
    command_result: CommandResult
    def __init__(self, register: _Optional[_Union[Register, _Mapping]] = ..., report: _Optional[_Union[HostReport, _Mapping]] = ..., command_result: _Optional[_Union[CommandResult, _Mapping]] = ...) -> None: ...

class CoordinatorMessage(_message.Message):
    __slots__ = ("register_ack", "command")
    REGISTER_ACK_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    register_ack: RegisterAck
    command: Command
    def __init__(self, register_ack: _Optional[_Union[RegisterAck, _Mapping]] = ..., command: _Optional[_Union[Command, _Mapping]] = ...) -> None: ...

class Register(_message.Message):
    __slots__ = ("host", "availability_zone", "pcpus", "memory_bytes", "agent_version", "report_interval_s", "boot_id")
    HOST_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_ZONE_FIELD_NUMBER: _ClassVar[int]
    PCPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    REPORT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    BOOT_ID_FIELD_NUMBER: _ClassVar[int]
    host: str
    availability_zone: str
    pcpus: int
    memory_bytes: int
    agent_version: str
    report_interval_s: int
    boot_id: str
    def __init__(self, host: _Optional[str] = ..., availability_zone: _Optional[str] = ..., pcpus: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., agent_version: _Optional[str] = ..., report_interval_s: _Optional[int] = ..., boot_id: _Optional[str] = ...) -> None: ...

class RegisterAck(_message.Message):
    __slots__ = ("coordinator_version", "report_interval_s")
    COORDINATOR_VERSION_FIELD_NUMBER: _ClassVar[int]
    REPORT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    coordinator_version: str
    report_interval_s: int
    def __init__(self, coordinator_version: _Optional[str] = ..., report_interval_s: _Optional[int] = ...) -> None: ...

class HostReport(_message.Message):
    __slots__ = ("seq", "monotonic_ns", "wall_time_unix_ns", "host", "vms", "dropped_reports", "replayed", "collection_ns")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    MONOTONIC_NS_FIELD_NUMBER: _ClassVar[int]
    WALL_TIME_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    VMS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_REPORTS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_NS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    monotonic_ns: int
    wall_time_unix_ns: int
    host: HostCounters
    vms: _containers.RepeatedCompositeFieldContainer[VmSample]
    dropped_reports: int
    replayed: bool
    collection_ns: int
    def __init__(self, seq: _Optional[int] = ..., monotonic_ns: _Optional[int] = ..., wall_time_unix_ns: _Optional[int] = ..., host: _Optional[_Union[HostCounters, _Mapping]] = ..., vms: _Optional[_Iterable[_Union[VmSample, _Mapping]]] = ..., dropped_reports: _Optional[int] = ..., replayed: _Optional[bool] = ..., collection_ns: _Optional[int] = ...) -> None: ...

class HostCounters(_message.Message):
    __slots__ = ("user_ns", "system_ns", "idle_ns", "iowait_ns", "steal_ns", "total_ns", "loadavg_1m", "memory_total_bytes", "memory_available_bytes")
    USER_NS_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_NS_FIELD_NUMBER: _ClassVar[int]
    IDLE_NS_FIELD_NUMBER: _ClassVar[int]
    IOWAIT_NS_FIELD_NUMBER: _ClassVar[int]
    STEAL_NS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_NS_FIELD_NUMBER: _ClassVar[int]
    LOADAVG_1M_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_AVAILABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    user_ns: int
    system_ns: int
    idle_ns: int
    iowait_ns: int
    steal_ns: int
    total_ns: int
    loadavg_1m: float
    memory_total_bytes: int
    memory_available_bytes: int
    def __init__(self, user_ns: _Optional[int] = ..., system_ns: _Optional[int] = ..., idle_ns: _Optional[int] = ..., iowait_ns: _Optional[int] = ..., steal_ns: _Optional[int] = ..., total_ns: _Optional[int] = ..., loadavg_1m: _Optional[float] = ..., memory_total_bytes: _Optional[int] = ..., memory_available_bytes: _Optional[int] = ...) -> None: ...

class VmSample(_message.Message):
    __slots__ = ("instance_uuid", "name", "domain_uuid", "domain_id", "vcpus", "cpu_time_ns", "steal_ns", "steal_source", "vcpu_delay_ns", "memory_bytes", "disk_bytes", "load_source", "guest_load_1m", "migration", "nova_metadata", "dirty_rate_mib_s")
    INSTANCE_UUID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_UUID_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_ID_FIELD_NUMBER: _ClassVar[int]
    VCPUS_FIELD_NUMBER: _ClassVar[int]
    CPU_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    STEAL_NS_FIELD_NUMBER: _ClassVar[int]
    STEAL_SOURCE_FIELD_NUMBER: _ClassVar[int]
    VCPU_DELAY_NS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    DISK_BYTES_FIELD_NUMBER: _ClassVar[int]
    LOAD_SOURCE_FIELD_NUMBER: _ClassVar[int]
    GUEST_LOAD_1M_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_FIELD_NUMBER: _ClassVar[int]
    NOVA_METADATA_FIELD_NUMBER: _ClassVar[int]
    DIRTY_RATE_MIB_S_FIELD_NUMBER: _ClassVar[int]
    instance_uuid: str
    name: str
    domain_uuid: str
    domain_id: int
    vcpus: int
    cpu_time_ns: int
    steal_ns: int
    steal_source: StealSource
    vcpu_delay_ns: _containers.RepeatedScalarFieldContainer[int]
    memory_bytes: int
    disk_bytes: int
    load_source: LoadSource
    guest_load_1m: float
    migration: MigrationJob
    nova_metadata: bool
    dirty_rate_mib_s: float
    def __init__(self, instance_uuid: _Optional[str] = ..., name: _Optional[str] = ..., domain_uuid: _Optional[str] = ..., domain_id: _Optional[int] = ..., vcpus: _Optional[int] = ..., cpu_time_ns: _Optional[int] = ..., steal_ns: _Optional[int] = ..., steal_source: _Optional[_Union[StealSource, str]] = ..., vcpu_delay_ns: _Optional[_Iterable[int]] = ..., memory_bytes: _Optional[int] = ..., disk_bytes: _Optional[int] = ..., load_source: _Optional[_Union[LoadSource, str]] = ..., guest_load_1m: _Optional[float] = ..., migration: _Optional[_Union[MigrationJob, _Mapping]] = ..., nova_metadata: _Optional[bool] = ..., dirty_rate_mib_s: _Optional[float] = ...) -> None: ...

class MigrationJob(_message.Message):
    __slots__ = ("data_processed_bytes", "data_remaining_bytes", "data_total_bytes", "bandwidth_mib_s", "memory_dirty_rate_bytes_s", "elapsed_ms")
    DATA_PROCESSED_BYTES_FIELD_NUMBER: _ClassVar[int]
    DATA_REMAINING_BYTES_FIELD_NUMBER: _ClassVar[int]
    DATA_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    BANDWIDTH_MIB_S_FIELD_NUMBER: _ClassVar[int]
    MEMORY_DIRTY_RATE_BYTES_S_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    data_processed_bytes: int
    data_remaining_bytes: int
    data_total_bytes: int
    bandwidth_mib_s: int
    memory_dirty_rate_bytes_s: int
    elapsed_ms: int
    def __init__(self, data_processed_bytes: _Optional[int] = ..., data_remaining_bytes: _Optional[int] = ..., data_total_bytes: _Optional[int] = ..., bandwidth_mib_s: _Optional[int] = ..., memory_dirty_rate_bytes_s: _Optional[int] = ..., elapsed_ms: _Optional[int] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("id", "set_migration_speed", "ping")
    ID_FIELD_NUMBER: _ClassVar[int]
    SET_MIGRATION_SPEED_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    id: str
    set_migration_speed: SetMigrationSpeed
    ping: Ping
    def __init__(self, id: _Optional[str] = ..., set_migration_speed: _Optional[_Union[SetMigrationSpeed, _Mapping]] = ..., ping: _Optional[_Union[Ping, _Mapping]] = ...) -> None: ...

class SetMigrationSpeed(_message.Message):
    __slots__ = ("instance_uuid", "bandwidth_mib_s")
    INSTANCE_UUID_FIELD_NUMBER: _ClassVar[int]
    BANDWIDTH_MIB_S_FIELD_NUMBER: _ClassVar[int]
    instance_uuid: str
    bandwidth_mib_s: int
    def __init__(self, instance_uuid: _Optional[str] = ..., bandwidth_mib_s: _Optional[int] = ...) -> None: ...

class Ping(_message.Message):
    __slots__ = ("sent_unix_ns",)
    SENT_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    sent_unix_ns: int
    def __init__(self, sent_unix_ns: _Optional[int] = ...) -> None: ...

class CommandResult(_message.Message):
    __slots__ = ("command_id", "ok", "error", "applied_bandwidth_mib_s")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    APPLIED_BANDWIDTH_MIB_S_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    ok: bool
    error: str
    applied_bandwidth_mib_s: int
    def __init__(self, command_id: _Optional[str] = ..., ok: _Optional[bool] = ..., error: _Optional[str] = ..., applied_bandwidth_mib_s: _Optional[int] = ...) -> None: ...
