"""The `jobyard.yaml` file: queues, schedules and limits.

The file is validated strictly: an unknown key, a wrong type or an inconsistent value
stops start-up with a :class:`ConfigError` that names the field, the value and what is
allowed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from celery.schedules import crontab
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from jobyard.core.egress import CONTEXT_KEY as EGRESS_CONTEXT_KEY
from jobyard.core.egress import LOOPBACK_NETWORKS, EgressPolicy, host_matches, parse_allow_entry
from jobyard.core.errors import ConfigError, format_validation_error

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$"
"""Queue names double as Kubernetes object name parts and Redis keys: DNS-label style."""

SCHEDULE_NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"

KOMBU_PRIORITY_STEPS = (0, 3, 6, 9)


def _repeated(items: Iterable[str]) -> list[str]:
    """The values that occur more than once, sorted."""
    seen: set[str] = set()
    twice: set[str] = set()
    for item in items:
        (twice if item in seen else seen).add(item)
    return sorted(twice)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QueueAlerts(_Strict):
    """Per-queue alert thresholds, exported as metrics so one rule file serves all queues."""

    backlog_jobs: Annotated[int, Field(ge=1)] = 1000
    """JobyardQueueBacklogHigh: waiting jobs above this for `backlog_for_s`."""
    oldest_job_age_s: Annotated[float, Field(gt=0)] = 600
    """JobyardQueueOldestJobTooOld: the oldest waiting job is older than this (wait SLO)."""
    failure_ratio: Annotated[float, Field(gt=0, le=1)] = 0.1
    """JobyardJobFailureRatioHigh: failed/finished above this over 15 minutes..."""
    failure_min_jobs: Annotated[int, Field(ge=1)] = 20
    """...when at least this many jobs finished in those 15 minutes."""
    wait_p95_s: Annotated[float, Field(gt=0)] = 120
    """JobyardQueueWaitSlow: p95 enqueue-to-start wait above this."""
    run_p95_ratio_of_soft_limit: Annotated[float, Field(gt=0, le=1)] = 0.8
    """JobyardJobRunNearTimeLimit: p95 run time above this fraction of the soft limit."""


class QueueConfig(_Strict):
    """One Celery queue, consumed by its own worker Deployment."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    concurrency: Annotated[int, Field(ge=1, le=256)] = 2
    """Prefork children per worker process."""
    soft_time_limit_s: Annotated[float, Field(gt=0, le=86_400)] = 300
    """Default soft limit: the job gets `SoftTimeLimitExceeded` and can clean up."""
    time_limit_s: Annotated[float, Field(gt=0, le=86_400)] = 360
    """Default hard limit: the child running the job is killed."""
    default_priority: Annotated[int, Field(ge=0, le=9)] = 0
    """Priority of jobs enqueued without one (Celery on Redis: 0 is the most urgent)."""
    min_replicas: Annotated[int, Field(ge=0, le=1000)] = 0
    max_replicas: Annotated[int, Field(ge=1, le=1000)] = 10
    backlog_per_replica: Annotated[int, Field(ge=1, le=1_000_000)] = 20
    """Waiting jobs one worker replica is expected to absorb (KEDA `listLength`)."""
    max_tasks_per_child: Annotated[int, Field(ge=1)] | None = None
    """Jobs a prefork child runs before it is replaced; None (the default, as in Celery):
    never. Each replacement costs a fork and the child's warm-up (100-200 ms of CPU) and
    delays the jobs waiting for it; `max_memory_per_child_kib` is the leak guard."""
    max_memory_per_child_kib: Annotated[int, Field(ge=1024)] | None = 512_000
    """Resident memory after which a child is replaced once its job ends; None: never."""
    shutdown_grace_s: Annotated[float, Field(ge=0, le=3600)] = 30
    """How long a SIGTERMed worker lets running jobs finish before requeueing them."""
    alerts: QueueAlerts = Field(default_factory=QueueAlerts)

    @model_validator(mode="after")
    def _limits_consistent(self) -> QueueConfig:
        if self.soft_time_limit_s >= self.time_limit_s:
            raise ValueError(
                f"soft_time_limit_s ({self.soft_time_limit_s:g}) must be below "
                f"time_limit_s ({self.time_limit_s:g}) so a job can clean up before it is killed"
            )
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) must not exceed "
                f"max_replicas ({self.max_replicas})"
            )
        return self


class ScheduleConfig(_Strict):
    """A periodic job sent by beat."""

    name: Annotated[str, Field(pattern=SCHEDULE_NAME_PATTERN)]
    task: Annotated[str, Field(min_length=1)]
    cron: str | None = None
    """Five-field cron expression in UTC: minute hour day-of-month month day-of-week."""
    interval_s: Annotated[float, Field(ge=1)] | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    queue: str | None = None
    """Overrides the job's default queue."""
    missed: Literal["skip", "run-once"] = "run-once"
    """A run missed while beat was down: `skip` it, or `run-once` to catch up with one run."""
    enabled: bool = True

    @field_validator("cron")
    @classmethod
    def _cron_parses(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = value.split()
        if len(parts) != 5:
            raise ValueError(
                f"cron {value!r} must have 5 fields (minute hour day-of-month month day-of-week)"
            )
        try:
            crontab.from_string(value)
        except Exception as exc:  # celery raises several types for bad fields
            raise ValueError(f"cron {value!r} does not parse: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _one_trigger(self) -> ScheduleConfig:
        if (self.cron is None) == (self.interval_s is None):
            raise ValueError("set exactly one of cron or interval_s")
        return self


class LimitsConfig(_Strict):
    """Limits the API and the store enforce."""

    max_payload_bytes: Annotated[int, Field(ge=256, le=16 * 1024 * 1024)] = 256 * 1024
    result_ttl_s: Annotated[int, Field(ge=60)] = 7 * 86_400
    """How long a finished job's record (and its result) is kept."""
    dead_letter_ttl_s: Annotated[int, Field(ge=60)] = 14 * 86_400
    max_batch_size: Annotated[int, Field(ge=1, le=10_000)] = 1000
    max_delay_s: Annotated[int, Field(ge=1)] = 30 * 86_400
    """The furthest in the future a job may be scheduled."""
    idempotency_ttl_s: Annotated[int, Field(ge=60)] = 86_400


class BrokerConfig(_Strict):
    """Delivery settings shared by every producer and consumer."""

    priority_steps: tuple[int, ...] = KOMBU_PRIORITY_STEPS
    """kombu's priority steps: one Redis list per step per queue (transport-wide)."""
    visibility_timeout_s: Annotated[float, Field(ge=1)] | None = None
    """Unacked messages older than this are redelivered. Default: the longest hard time
    limit plus the longest retry backoff plus 60 s."""
    max_retry_backoff_s: Annotated[float, Field(ge=1, le=3600)] = 600

    @field_validator("priority_steps")
    @classmethod
    def _steps_valid(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or value[0] != 0:
            raise ValueError("priority_steps must start at 0")
        if list(value) != sorted(set(value)) or value[-1] > 9:
            raise ValueError("priority_steps must be strictly increasing integers within 0..9")
        return value


class BeatConfig(_Strict):
    """The scheduler: its leadership lease and how often it works.

    One beat leads at a time (a Redis lease). The leader renews the lease every tick; a
    standby tries to take it every tick, so a leader that dies is replaced at most
    `lease_ttl_s + tick_s` later, and one that shuts down cleanly within one tick.
    """

    lease_ttl_s: Annotated[float, Field(ge=1, le=300)] = 10
    """How long the leader's lease lives unrenewed: the longest a dead leader blocks a
    standby."""
    tick_s: Annotated[float, Field(ge=0.05, le=60)] = 1
    """How often beat renews or tries the lease, sends due schedules and moves due delayed
    jobs to their queues. At most a third of `lease_ttl_s`."""
    restore_interval_s: Annotated[float, Field(ge=0.1, le=3600)] = 10
    """How often the leader puts messages left unacknowledged longer than the visibility
    timeout back in their queue (no worker does it for a queue scaled to zero)."""
    orphan_check_interval_s: Annotated[float, Field(ge=0.1, le=3600)] = 15
    """How often the leader looks for jobs whose message vanished in transit (a worker
    killed after taking it from Redis, before recording it as unacknowledged); one missing
    at two checks in a row is published again, so within twice this."""
    missed_grace_s: Annotated[float, Field(gt=0, le=86_400)] = 60
    """A run due less than this long ago is on time; an older one was missed and the
    schedule's `missed` policy decides. At least twice `tick_s`."""

    @model_validator(mode="after")
    def _tick_fits_lease(self) -> BeatConfig:
        if self.tick_s * 3 > self.lease_ttl_s:
            raise ValueError(
                f"tick_s ({self.tick_s:g}) must be at most a third of lease_ttl_s "
                f"({self.lease_ttl_s:g}) so the leader renews its lease before it expires"
            )
        if self.missed_grace_s < 2 * self.tick_s:
            raise ValueError(
                f"missed_grace_s ({self.missed_grace_s:g}) must be at least twice tick_s "
                f"({self.tick_s:g}), or runs sent on time would count as missed"
            )
        return self


def _allow_entry(entry: str) -> str:
    parse_allow_entry(entry)  # ValueError names the entry
    return entry


def _host_name(host: str) -> str:
    parsed = parse_allow_entry(host)
    if not isinstance(parsed, str):
        raise ValueError(f"{host!r}: hosts are host names, not addresses or networks")
    return parsed


class EgressConfig(_Strict):
    """Where jobs may connect besides public addresses (see `core.egress`)."""

    allow: list[Annotated[str, AfterValidator(_allow_entry)]] = Field(default_factory=list)
    """CIDRs or addresses (`10.20.0.0/16`, `fd00::/8`) and host names
    (`hooks.internal.example`; a leading `*.` matches subdomains) that outbound jobs may
    reach although they are loopback, private, link-local or otherwise internal. A listed
    name may resolve to any address."""

    _policy: EgressPolicy = PrivateAttr(default_factory=EgressPolicy)

    def model_post_init(self, context: Any, /) -> None:
        self._policy = EgressPolicy.from_entries(self.allow)

    @property
    def policy(self) -> EgressPolicy:
        """The allow-list as an :class:`~jobyard.core.egress.EgressPolicy`."""
        return self._policy

    def with_loopback(self) -> EgressConfig:
        """This allow-list plus loopback (`JOBYARD_EGRESS_ALLOW_LOOPBACK`, `jobyard dev`)."""
        extra = [n for n in LOOPBACK_NETWORKS if n not in self.allow]
        return EgressConfig(allow=[*self.allow, *extra])


class WebhookEndpoint(_Strict):
    """A webhook receiver with its own signing secrets (in `JOBYARD_WEBHOOK_SECRETS_FILE`)."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    hosts: list[Annotated[str, AfterValidator(_host_name)]] = Field(default_factory=list)
    """URLs whose host is one of these (exact, or `*.suffix` for subdomains) are signed
    with this endpoint's secrets; a job may also name the endpoint (`endpoint: <name>`)."""


class WebhooksConfig(_Strict):
    """`webhook.deliver` settings that are not secret."""

    endpoints: list[WebhookEndpoint] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> WebhooksConfig:
        dupes = _repeated(e.name for e in self.endpoints)
        if dupes:
            raise ValueError(f"endpoint names must be unique; repeated: {', '.join(dupes)}")
        hdupes = _repeated(h for e in self.endpoints for h in e.hosts)
        if hdupes:
            raise ValueError(
                f"a host may belong to one endpoint only; repeated: {', '.join(hdupes)}"
            )
        return self

    def endpoint(self, name: str) -> WebhookEndpoint:
        """The endpoint called `name`; `KeyError` when none is configured."""
        for e in self.endpoints:
            if e.name == name:
                return e
        raise KeyError(name)

    def endpoint_for_host(self, host: str) -> WebhookEndpoint | None:
        """The endpoint whose `hosts` match `host` (an exact name before a `*.` pattern)."""
        for wildcard in (False, True):
            for e in self.endpoints:
                if any(h.startswith("*.") == wildcard and host_matches(host, h) for h in e.hosts):
                    return e
        return None


class JobyardConfig(_Strict):
    """The whole `jobyard.yaml`."""

    queues: Annotated[list[QueueConfig], Field(min_length=1)]
    schedules: list[ScheduleConfig] = Field(default_factory=list)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    beat: BeatConfig = Field(default_factory=BeatConfig)
    egress: EgressConfig = Field(default_factory=EgressConfig)
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)

    @model_validator(mode="after")
    def _cross_checks(self) -> JobyardConfig:
        names = [q.name for q in self.queues]
        dupes = _repeated(names)
        if dupes:
            raise ValueError(f"queue names must be unique; repeated: {', '.join(dupes)}")
        sdupes = _repeated(s.name for s in self.schedules)
        if sdupes:
            raise ValueError(f"schedule names must be unique; repeated: {', '.join(sdupes)}")
        for s in self.schedules:
            if s.queue is not None and s.queue not in names:
                raise ValueError(
                    f"schedule {s.name!r} names queue {s.queue!r}; "
                    f"configured queues: {', '.join(names)}"
                )
        vt = self.broker.visibility_timeout_s
        floor = self.longest_time_limit_s + self.broker.max_retry_backoff_s
        if vt is not None and vt <= floor:
            raise ValueError(
                f"broker.visibility_timeout_s ({vt:g}) must exceed the longest queue "
                f"time_limit_s plus broker.max_retry_backoff_s ({floor:g}): running jobs and "
                "retries waiting for their countdown sit in `unacked` and would be delivered twice"
            )
        return self

    @property
    def queue_names(self) -> list[str]:
        return [q.name for q in self.queues]

    @property
    def longest_time_limit_s(self) -> float:
        return max(q.time_limit_s for q in self.queues)

    @property
    def visibility_timeout_s(self) -> float:
        """The effective visibility timeout."""
        if self.broker.visibility_timeout_s is not None:
            return self.broker.visibility_timeout_s
        return self.longest_time_limit_s + self.broker.max_retry_backoff_s + 60

    def args_context(self) -> dict[str, object]:
        """The pydantic validation context job arguments are checked with at enqueue: this
        config (`"config"`) and its egress policy (see `core.egress.OutboundUrl`)."""
        return {"config": self, EGRESS_CONTEXT_KEY: self.egress.policy}

    def queue(self, name: str) -> QueueConfig:
        """The queue called `name`; `KeyError` when none is configured."""
        for q in self.queues:
            if q.name == name:
                return q
        raise KeyError(name)


_TAB = re.compile(r"\t")


def parse_config(text: str, source: str = "jobyard.yaml") -> JobyardConfig:
    """Parse and validate config text; raise :class:`ConfigError` naming the field."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        return JobyardConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from exc


def load_config(path: str | Path) -> JobyardConfig:
    """Read and validate the config file at `path`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(
            f"config file {str(p)!r} does not exist (set JOBYARD_CONFIG to its path)"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"config file {str(p)!r} cannot be read: {exc}") from exc
    return parse_config(text, source=str(p))
