"""Registered jobs: the allow-list of what can be enqueued, and how each one runs.

A job is a plain function taking a :class:`~jobyard.core.context.JobContext` and a pydantic
model of its arguments::

    class Args(BaseModel):
        user_id: int

    @job("users.welcome", queue="emails", args=Args, retry=RetryPolicy(max_attempts=5))
    def welcome(ctx: JobContext, args: Args) -> dict[str, str]:
        ...
"""

from __future__ import annotations

import importlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

from jobyard.core.errors import ConfigError, UnknownTaskError

if TYPE_CHECKING:
    from jobyard.core.context import JobContext

A = TypeVar("A", bound=BaseModel)

TASK_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")

BUILTIN_MODULES = (
    "jobyard.jobs.noop",
    "jobyard.jobs.webhook",
    "jobyard.jobs.email",
    "jobyard.jobs.report",
    "jobyard.jobs.maintenance",
)
"""Built-in job modules, imported before the user's `JOBYARD_JOB_MODULES`."""


class RetryableError(Exception):
    """Raise from a job to ask for a retry whatever the policy's `retry_on` says.

    `delay_s` overrides the computed backoff (for example from a `Retry-After` header).
    """

    def __init__(self, message: str, *, delay_s: float | None = None) -> None:
        super().__init__(message)
        self.delay_s = delay_s


class PermanentError(Exception):
    """Raise from a job to fail it now, without retrying."""


class JobCancelled(Exception):  # noqa: N818 - reads as what happened: `raise JobCancelled()`
    """Raise from a job that stops because someone cancelled it (see `ctx.cancel_requested`).

    The job ends in state `cancelled`, is not retried and is not dead-lettered.
    """


@dataclass(frozen=True)
class RetryPolicy:
    """How a failing job is retried: exponential backoff with full jitter."""

    max_attempts: int = 3
    backoff_s: float = 2.0
    backoff_max_s: float = 300.0
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    """Exception types that are retried; `PermanentError` never is."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff_s < 0 or self.backoff_max_s < self.backoff_s:
            raise ValueError("need 0 <= backoff_s <= backoff_max_s")

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        """Whether attempt number `attempt` (1-based) failing with `exc` is retried."""
        if attempt >= self.max_attempts or isinstance(exc, PermanentError):
            return False
        return isinstance(exc, (RetryableError, self.retry_on))

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based)."""
        ceiling = min(self.backoff_max_s, self.backoff_s * 2.0 ** (attempt - 1))
        if not self.jitter:
            return ceiling
        return (rng or _RNG).uniform(ceiling / 2, ceiling)


NO_RETRY = RetryPolicy(max_attempts=1)
_RNG = random.Random()


@dataclass(frozen=True)
class JobSpec(Generic[A]):
    """A registered job."""

    name: str
    fn: Callable[[JobContext, A], Any]
    args_model: type[A]
    queue: str = "default"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    soft_time_limit_s: float | None = None
    """None: the queue's default."""
    time_limit_s: float | None = None
    idempotent: bool = False
    """True: a redelivered job whose record says it already succeeded is not run again."""
    description: str = ""

    def validate_args(self, raw: dict[str, Any], context: Any = None) -> A:
        """Parse raw arguments; raises pydantic's ValidationError.

        `context`: the pydantic validation context; at enqueue the config's
        (`JobyardConfig.args_context()`), which turns on checks that need the configuration
        (the egress policy of `core.egress.OutboundUrl`, configured names). A worker
        re-validating a message passes none.
        """
        return self.args_model.model_validate(raw, context=context)


class Registry:
    """Name -> JobSpec."""

    def __init__(self) -> None:
        self._specs: dict[str, JobSpec[Any]] = {}

    def add(self, spec: JobSpec[Any]) -> None:
        existing = self._specs.get(spec.name)
        if existing is not None and existing.fn is not spec.fn:
            raise ConfigError(f"job name {spec.name!r} is registered twice")
        self._specs[spec.name] = spec

    def get(self, name: str) -> JobSpec[Any]:
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownTaskError(name, self.names()) from None

    def names(self) -> list[str]:
        return sorted(self._specs)

    def specs(self) -> list[JobSpec[Any]]:
        return [self._specs[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._specs


REGISTRY = Registry()


def job(
    name: str,
    *,
    args: type[A],
    queue: str = "default",
    retry: RetryPolicy | None = None,
    soft_time_limit_s: float | None = None,
    time_limit_s: float | None = None,
    idempotent: bool = False,
    registry: Registry | None = None,
) -> Callable[[Callable[[JobContext, A], Any]], Callable[[JobContext, A], Any]]:
    """Register a function as the job `name` (lower-case dotted, e.g. `reports.monthly`)."""
    if not TASK_NAME.match(name):
        raise ValueError(
            f"job name {name!r} must be lower-case dotted words, e.g. 'billing.invoice'"
        )
    if (
        soft_time_limit_s is not None
        and time_limit_s is not None
        and soft_time_limit_s >= time_limit_s
    ):
        raise ValueError(f"job {name!r}: soft_time_limit_s must be below time_limit_s")

    def register(fn: Callable[[JobContext, A], Any]) -> Callable[[JobContext, A], Any]:
        (registry or REGISTRY).add(
            JobSpec(
                name=name,
                fn=fn,
                args_model=args,
                queue=queue,
                retry=retry or RetryPolicy(),
                soft_time_limit_s=soft_time_limit_s,
                time_limit_s=time_limit_s,
                idempotent=idempotent,
                description=(fn.__doc__ or "").strip().split("\n\n")[0],
            )
        )
        return fn

    return register


def load_job_modules(modules: list[str], *, builtins: bool = True) -> Registry:
    """Import the built-in job modules and the user's; return the registry."""
    for mod in (*(BUILTIN_MODULES if builtins else ()), *modules):
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            raise ConfigError(f"JOBYARD_JOB_MODULES: cannot import {mod!r}: {exc}") from exc
    return REGISTRY


def check_queues(registry: Registry, queue_names: list[str]) -> None:
    """Every job's default queue must be configured."""
    for spec in registry.specs():
        if spec.queue not in queue_names:
            raise ConfigError(
                f"job {spec.name!r} has default queue {spec.queue!r}, which is not configured; "
                f"configured queues: {', '.join(queue_names)}"
            )
