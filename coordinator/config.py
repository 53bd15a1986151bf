"""Typed configuration, validated once at start-up.

Every section is a frozen pydantic model that forbids unknown keys, so a typo in a
config file is an error naming the key (`limits.max_per_sorce: unknown key`) rather
than a silently ignored setting. `load_config` is the only entry point for files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from coordinator import strict_yaml
from coordinator.detach_config import ConsulConfig, KubernetesConfig, LeaderConfig


class ConfigError(ValueError):
    """A configuration or scenario file is malformed; the message names the field."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class PolicyConfig(_Section):
    """Detection and target selection."""

    steal_threshold: float = Field(0.05, ge=0, le=1)
    """A VM is a candidate when its smoothed steal ratio is above this (0.05 = 5%):
    lower than the 10% operators call 'contended', to act before it hurts."""
    clog_threshold: float = Field(0.10, ge=0, le=1)
    """...AND its work is held up: steal / (steal + run), the share of the CPU it wanted
    that it waited for, is above this (the guest's load per vCPU stands for "wanted"
    where its guest agent reports one). 0.10 = it lost a tenth of its CPU."""
    load_threshold: float = Field(0.0, ge=0)
    """...AND its load per vCPU is above this (1.0 = every vCPU runnable). 0 = no busy
    gate: a VM that wants 45% of a vCPU and gets 35% is clogged too."""
    sustained_s: float = Field(15.0, gt=0, le=3600)
    """...for at least this long: the consecutive readings that showed it cover this many
    seconds (two of the agents' 10 s reports; one of the simulator's 60 s steps, each of
    which already averages a minute)."""
    source_relief_fill: float = Field(0.90, gt=0, le=2)
    """A host with clogged VMs is relieved once its predicted CPU demand is at most this
    share of its pCPUs; until then any of its VMs (flagged or not) may be the move,
    the most stolen CPU relieved per GiB first."""
    relief_lookahead_s: float = Field(60.0, ge=0, le=3600)
    """How far ahead host relief plans: a pressed host's demand is projected this far
    along its recent rise (about the time a move takes to land), so the moves started
    at the onset of a peak cover the load they land into, not the load they left.
    0 = plan on the demand measured now."""
    relief_memory_s: float = Field(1200.0, ge=0, le=86400)
    """Once a host is found pressed (clogged VMs, demand over its pCPUs), its relief
    goes on while its demand stays over `source_relief_fill`, for this long after the
    last round that saw a clogged VM there: at a plateau the steal is spread thin and
    each VM's own evidence flickers. 0 = each round needs a clogged VM of its own."""
    rescue_fill_max: float = Field(0.95, gt=0, le=1)
    """When no host of the AZ can take a VM under `target_cpu_fill_max` (the AZ is
    beyond rescue), a host may still take it up to this predicted fill: spreading the
    excess so fewer VMs suffer, never pushing a target into contention."""
    target_steal_max: float = Field(0.03, ge=0, le=1)
    """A target host's steal must be below this."""
    target_cpu_fill_max: float = Field(0.80, gt=0, le=2)
    """Predicted CPU demand / pCPUs of the target after the move must stay below this."""
    peak_half_life_s: float = Field(24 * 3600.0, ge=0, le=30 * 86400)
    """Each VM's peak demand is remembered, fading by half over this: a target whose
    VMs' recent peaks (the incoming VM's included) add up to more than its pCPUs
    ranks after every one whose peaks fit, so a host idle between its tenants' daily
    peaks is not filled for the next one. A preference, never a filter. 0 = targets
    ranked on the demand measured now only."""
    freshness_s: float = Field(30.0, gt=0)
    """Telemetry older than this (3 agent intervals) is stale: no decisions from it."""
    cooldown_s: float = Field(6 * 3600.0, ge=0)
    """A moved VM is not moved again automatically for this long."""
    quarantine_s: float = Field(12 * 3600.0, ge=0)
    """A VM whose move failed or did not reduce steal is parked for this long."""
    verify_window_s: float = Field(600.0, ge=0)
    """After a move, steal is compared once this window has passed."""
    steal_tie_band: float = Field(0.01, ge=0, le=1)
    """Targets whose steal differs by less than this are equal on steal, so the
    role spread and headroom decide between them (steal under 1% is noise)."""

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        # An older config file says what to write instead of only "extra field".
        if isinstance(data, dict) and "sustained_samples" in data:
            raise ValueError(
                "sustained_samples is now sustained_s: the seconds the consecutive "
                "contended readings must cover (15 = two of the agents' 10 s reports)"
            )
        return data


def detection_warnings(policy: PolicyConfig) -> list[str]:
    """Thresholds no VM can ever exceed (both ratios are at most 1, and a VM must be
    above them): nothing is detected and nothing moves. Warned, not refused, at
    start-up: they are a way to watch without acting, if a strange one."""
    thresholds = {"steal_threshold": policy.steal_threshold,
                  "clog_threshold": policy.clog_threshold}  # fmt: skip
    return [
        f"policy.{name} is {value:g}: no VM can be above it, so none is ever detected"
        for name, value in thresholds.items()
        if value >= 1
    ]


class LimitsConfig(_Section):
    """Every cap on what the coordinator may do at once lives here.

    State the migration network (`link_mib_s`, `fabric_mib_s`) and the bandwidth
    budget and per-migration cap follow from it (unless set explicitly):
    budget = fabric × `network_share`; per-migration cap = link × `network_share` /
    `max_per_source`, so a source sending its allowed migrations never fills its NIC.
    Without them the fixed defaults below apply.
    """

    link_mib_s: float | None = Field(None, gt=0)
    """Speed of one hypervisor's migration NIC, MiB/s (10 GbE ≈ 1190, 25 GbE ≈ 2980);
    None = unknown, use `max_bandwidth_per_migration_mib_s` as given."""
    fabric_mib_s: float | None = Field(None, gt=0)
    """What the shared migration network carries in total, MiB/s (the uplinks or the
    spine the migrations cross); None = unknown, use `bandwidth_budget_mib_s` as given."""
    network_share: float = Field(0.8, gt=0, le=1)
    """The part of a link or of the fabric migrations may use, leaving the rest for
    the traffic the network also carries."""

    max_concurrent: int = Field(8, ge=0)
    """Migrations in flight cluster-wide."""
    max_per_source: int = Field(2, ge=0)
    """Migrations in flight leaving one hypervisor (its NIC and CPU pay for them)."""
    max_per_target: int = Field(1, ge=0)
    """Migrations in flight arriving on one hypervisor."""
    max_per_az: int = Field(4, ge=0)
    """Migrations in flight within one availability zone."""
    max_per_hour: int = Field(80, ge=0)
    """Automatic migrations started within any hour (those finished in the last hour
    plus those in flight): a bound on churn when an AZ cannot be rescued."""
    bandwidth_budget_mib_s: float = Field(2000.0, gt=0)
    """Sum of the bandwidth caps of all migrations in flight never exceeds this."""
    max_bandwidth_per_migration_mib_s: float = Field(500.0, gt=0)
    """The cap given to one migration (virDomainMigrateSetMaxSpeed) when the budget allows."""
    min_bandwidth_per_migration_mib_s: float = Field(100.0, gt=0)
    """A migration is not started with less bandwidth than this."""

    @model_validator(mode="before")
    @classmethod
    def _from_network(cls, data: Any) -> Any:
        """Derive the budget and the per-migration cap from the stated network."""
        if not isinstance(data, Mapping):
            return data
        derived = dict(data)
        share = _positive(data.get("network_share", 0.8))
        fabric, link = _positive(data.get("fabric_mib_s")), _positive(data.get("link_mib_s"))
        per_source = _positive(data.get("max_per_source", 2)) or 1.0
        if share is not None and fabric is not None:
            derived.setdefault("bandwidth_budget_mib_s", fabric * share)
        if share is not None and link is not None:
            derived.setdefault("max_bandwidth_per_migration_mib_s", link * share / per_source)
        return derived

    @property
    def grant_mib_s(self) -> float:
        """The cap each migration is granted: the largest equal share of the budget
        not above `max_bandwidth_per_migration_mib_s`, so the budget divides into
        whole migrations (2400 with a 1190 cap gives three of 800, not 1190, 1190
        and a useless 20)."""
        slots = math.ceil(self.bandwidth_budget_mib_s / self.max_bandwidth_per_migration_mib_s)
        return self.bandwidth_budget_mib_s / max(slots, 1)

    @model_validator(mode="after")
    def _bandwidth_bounds(self) -> LimitsConfig:
        if self.min_bandwidth_per_migration_mib_s > self.max_bandwidth_per_migration_mib_s:
            raise ValueError(
                "min_bandwidth_per_migration_mib_s must not exceed "
                "max_bandwidth_per_migration_mib_s"
            )
        return self


def _positive(value: object) -> float | None:
    """A finite positive number from raw config input, else None (field checks report it)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and number > 0 else None


class CostConfig(_Section):
    """The live-migration cost model (pre-copy with a dirty rate)."""

    max_migration_s: float = Field(900.0, gt=0)
    """A move predicted to take longer than this is skipped."""
    max_downtime_ms: float = Field(300.0, gt=0)
    """Pre-copy stops when what is left can be sent in this stop-and-copy window."""
    max_precopy_rounds: int = Field(30, ge=1)
    """Pre-copy is predicted not to converge if it needs more rounds than this."""
    max_dirty_to_bandwidth: float = Field(0.8, gt=0, lt=1)
    """Pre-copy is predicted not to converge when dirty rate / bandwidth is above this."""
    min_relief_per_gib: float = Field(0.02, ge=0)
    """Moves relieving less stolen CPU per GiB copied than this are not worth it:
    0.02 = a move copying 100 GiB (a large local disk) must free 2 stolen vCPUs.
    Tuned on the scenario library (BENCHMARKS.md): about half the GiB for a little
    more pain. Never applies to an operator's manual move."""
    dirty_mib_s_per_busy_vcpu: float = Field(16.0, ge=0)
    """Dirty-rate estimate when telemetry has none: MiB/s per busy vCPU."""


class TlsConfig(_Section):
    """TLS for one port; with `ca_file`, clients must present a certificate signed by it."""

    cert_file: str
    """PEM certificate the coordinator presents on this port."""
    key_file: str
    """PEM private key of `cert_file`."""
    ca_file: str = ""
    """Client CA; when empty the port is TLS only (clients are not authenticated)."""


class ServiceConfig(_Section):
    """Where the coordinator listens and how often it acts."""

    agent_listen: str = "127.0.0.1:50051"
    """host:port of the agents' gRPC port (AgentLink streams)."""
    admin_listen: str = "127.0.0.1:50052"
    """host:port of the Admin gRPC API (coordctl); keep it off public networks."""
    metrics_listen: str = "127.0.0.1:9180"
    """Prometheus /metrics (host:port); empty disables it."""
    tls: TlsConfig | None = None
    """TLS for the agent port; none = plaintext (insecure: any client that reaches the
    port may register as any hypervisor and report telemetry for it). With `ca_file`
    (mTLS, the production setting) an agent may register only as the hypervisor its
    client certificate names: its subjectAltName DNS names, else its subject CN."""
    admin_tls: TlsConfig | None = None
    """TLS for the admin port (coordctl); with `ca_file`, coordctl must present a
    client certificate signed by it. None = plaintext (keep it ClusterIP)."""
    admin_token: str = ""
    """When set, admin calls need metadata `authorization: Bearer <token>`. Leading and
    trailing whitespace is stripped; a value of only whitespace is an error.
    STEALBALANCER_ADMIN_TOKEN overrides it (and must not be empty when set)."""
    admin_insecure: bool = False
    """Allow the admin API on a non-loopback `admin_listen` with neither a token nor
    client certificates (`admin_tls.ca_file`): anyone who reaches the port may then
    pause, resume and migrate. `serve` refuses to start that way unless this is true."""
    agent_interval_s: float = Field(10.0, gt=0)
    """The report interval agents are told to use; 3 missed intervals make a host stale."""
    plan_interval_s: float = Field(10.0, gt=0)
    """How often a planning round runs (snapshot, plan, start moves)."""
    inventory_interval_s: float = Field(60.0, gt=0)
    """How often Nova's hypervisors, servers and server groups are re-read."""
    register_timeout_s: float = Field(10.0, gt=0)
    """A stream that has not sent Register within this is closed."""
    max_message_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=2**31 - 1)  # grpc's int32
    """Largest gRPC message accepted or sent, on both ports."""
    max_vms_per_report: int = Field(1000, ge=1)
    """A host report listing more VMs than this is rejected as corrupt."""
    telemetry_forget_reports: int = Field(30, ge=1)
    """A VM's counter state is dropped once its host has sent this many reports without
    it (30 = 5 minutes at a 10 s interval), so memory stays flat as VMs come and go; a
    VM that comes back starts from fresh counters."""
    journal_path: str = "/var/lib/stealbalancer/journal.sqlite"
    """The SQLite migration journal; it must survive restarts (crash recovery reads it)."""
    journal_url: str = ""
    """A shared journal on MariaDB/MySQL or PostgreSQL instead of `journal_path` (the HA
    setup: every replica reads what the leader had in flight), as an SQLAlchemy URL
    without a password, e.g. `mysql+pymysql://stealbalancer@galera:3306/stealbalancer`
    or `postgresql+psycopg://stealbalancer@db:5432/stealbalancer`."""
    journal_password_file: str = ""
    """File holding the `journal_url` user's password (e.g. a mounted Secret); the
    STEALBALANCER_JOURNAL_PASSWORD environment variable overrides it."""
    azs: list[str] = []
    """Availability zones this coordinator owns (empty = all): it reads only their
    hypervisors and servers, admits only their agents, plans within them, and its
    Lease is named after them, so one coordinator per AZ group can run side by side."""
    start_paused: bool = False
    """A fresh install starts with automatic migrations paused (`coordctl resume` starts
    them): applied only while the journal has never recorded a pause or a resume, so a
    restart keeps what an operator last chose."""
    plan_on_contention: bool = True
    """Also plan as soon as a report shows a contended VM Nova places on that host,
    not only every interval (at most one such early round per quarter interval)."""
    record_reports: str = ""
    """Append every accepted agent report to this file (JSON lines) for
    `simulate --replay`; empty = off. It grows with the cluster: a day of 80 hosts at
    10 s is a few hundred MiB. A failed write ends it until a restart
    (`stealbalancer_report_recording_failed` is then 1)."""

    @field_validator("admin_token")
    @classmethod
    def _strip_token(cls, value: str) -> str:
        # A token file or Secret written with `echo` ends in a newline that no client sends.
        if value and not value.strip():
            raise ValueError("is only whitespace: set a token or leave the key out")
        return value.strip()

    @model_validator(mode="after")
    def _no_password_in_url(self) -> ServiceConfig:
        # A config file is a ConfigMap, readable by many: the password goes elsewhere.
        if self.journal_url and urlsplit(self.journal_url).password:
            raise ValueError(
                "journal_url must not carry a password: use journal_password_file or "
                "STEALBALANCER_JOURNAL_PASSWORD"
            )
        if self.journal_url and "://" not in self.journal_url:
            raise ValueError("journal_url must be a database URL (dialect+driver://...)")
        return self

    @model_validator(mode="after")
    def _azs_named_once(self) -> ServiceConfig:
        if any(not az.strip() for az in self.azs) or len(set(self.azs)) != len(self.azs):
            raise ValueError("azs: each availability zone once, by its Nova name")
        return self


class NovaConfig(_Section):
    """How to reach Nova (credentials stay in clouds.yaml / OS_CLOUD)."""

    cloud: str | None = None
    """clouds.yaml entry; None = OS_CLOUD or the OS_* variables."""
    compute_endpoint_override: str = ""
    """With this set and no cloud, Nova is reached without auth (test fixtures only)."""
    timeout_s: float = Field(30.0, gt=0)
    """Longest wait for Nova to accept a request or send more of its answer; past it
    the call fails as unavailable (retried later) instead of blocking start-up and
    the tick forever."""


class InventoryConfig(_Section):
    """Server metadata keys the coordinator reads."""

    role_key: str = "role"
    """Server metadata key naming the VM's role; targets with fewer VMs of that role win."""
    orchestrator_key: str = "stealbalancer.orchestrator"
    """Value: kubernetes | consul | none."""
    orchestrator_ref_key: str = "stealbalancer.orchestrator_ref"
    """Kubernetes node name or Consul agent address."""
    opt_out_key: str = "stealbalancer.opt_out"
    """Server metadata key; true/yes/on/1 means: never migrate this VM automatically."""


class WorkflowConfig(_Section):
    """How a migration is followed."""

    poll_s: float = Field(1.0, gt=0)
    """How often a running migration's progress is read from Nova."""
    stall_s: float = Field(120.0, gt=0)
    """Abort when Nova's progress counters have not moved for this long."""
    abort_wait_s: float = Field(120.0, gt=0)
    """How long Nova has to confirm an abort before the migration is marked FAILED."""
    verify_timeout_s: float = Field(60.0, gt=0)
    """How long the target's agent has to report the domain after the move."""
    min_steal_drop: float = Field(0.3, ge=0, le=1)
    """After the verify window, steal must have dropped by this fraction, else the
    VM and the target are quarantined."""
    accept_grace_s: float = Field(30.0, gt=0)
    """How long Nova has to show the migration it accepted (it records it
    asynchronously) before the move is taken as never started."""
    retry_base_s: float = Field(5.0, gt=0)
    """Backoff after a failed step: this, doubled per failure in a row..."""
    retry_max_s: float = Field(300.0, gt=0)
    """...up to this."""
    max_attempts: int = Field(5, ge=1)
    """Failed steps in a row after which a migration is given up: the VM is put back
    in its orchestrator and parked. Putting a VM back is retried without limit."""
    max_detached_s: float = Field(3600.0, gt=0)
    """A VM out of its orchestrator longer than this is reported as overdue
    (`stealbalancer_migrations_detached_overdue`, `coordctl status`)."""
    not_started_park_s: float = Field(1800.0, ge=0)
    """A move given up before anything was done (the re-check or the bandwidth cap
    said no) parks the VM this long; any later failure parks it `policy.quarantine_s`."""


class Config(_Section):
    """The whole coordinator configuration."""

    policy: PolicyConfig = PolicyConfig()
    limits: LimitsConfig = LimitsConfig()
    cost: CostConfig = CostConfig()
    service: ServiceConfig = ServiceConfig()
    nova: NovaConfig = NovaConfig()
    inventory: InventoryConfig = InventoryConfig()
    workflow: WorkflowConfig = WorkflowConfig()
    kubernetes: KubernetesConfig = KubernetesConfig()
    consul: ConsulConfig = ConsulConfig()
    leader: LeaderConfig = LeaderConfig()


_M = TypeVar("_M", bound=BaseModel)


def format_validation_error(error: ValidationError, prefix: str = "") -> str:
    """One line per problem, each naming the dotted path of the bad field."""
    lines = []
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"])
        where = f"{prefix}{path}" if path else prefix.rstrip(".") or "<root>"
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        lines.append(f"{where}: {message}")
    return "; ".join(lines)


def parse_model(model: type[_M], data: Any, source: str) -> _M:
    """Validate `data` as `model`, raising ConfigError that names source and field."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc)}") from None


def read_structured_file(path: Path) -> Any:
    """Read YAML (a superset of JSON) with a clear error for missing or broken files."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        return strict_yaml.load(text)
    except strict_yaml.DuplicateKeyError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML/JSON: {strict_yaml.problem(exc)}") from None


def load_config(path: Path | None) -> Config:
    """The configuration from `path`, or the defaults when no file is given."""
    if path is None:
        return Config()
    return parse_model(Config, read_structured_file(path), str(path))
