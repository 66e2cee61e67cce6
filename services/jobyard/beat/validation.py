"""Start-up checks of the configured schedules against the registered jobs."""

from __future__ import annotations

from pydantic import ValidationError

from jobyard.core.config import JobyardConfig
from jobyard.core.errors import ConfigError, format_validation_error
from jobyard.core.registry import Registry


def validate_schedules(config: JobyardConfig, registry: Registry, source: str) -> None:
    """Refuse to start on a schedule beat could never send.

    Checks every schedule (enabled or not): its task is registered, its args match the
    task's argument model, it lands on a configured queue, and an interval schedule is
    at least two ticks long (a shorter one could have two runs fall due between ticks,
    which beat would merge). Raises one :class:`ConfigError` listing every problem, each
    naming its field (`schedules[i].args.url`).
    """
    problems: list[str] = []
    tick_s = config.beat.tick_s
    for i, schedule in enumerate(config.schedules):
        where = f"{source}: schedules[{i}]"
        if schedule.interval_s is not None and schedule.interval_s < 2 * tick_s:
            problems.append(
                f"{where}.interval_s: {schedule.interval_s:g} s is shorter than twice "
                f"beat.tick_s ({tick_s:g} s); raise it or lower beat.tick_s"
            )
        if schedule.task not in registry:
            problems.append(
                f"{where}.task: unknown task {schedule.task!r}; "
                f"registered tasks: {', '.join(registry.names()) or 'none'}"
            )
            continue
        spec = registry.get(schedule.task)
        try:
            spec.validate_args(schedule.args, context=config.args_context())
        except ValidationError as exc:
            problems.append(
                format_validation_error(exc, source, loc_prefix=("schedules", i, "args"))
            )
        queue = schedule.queue or spec.queue
        if queue not in config.queue_names:
            problems.append(
                f"{where}.queue: task {schedule.task!r} goes to queue {queue!r} by default, "
                f"which is not configured; set queue to one of: {', '.join(config.queue_names)}"
            )
    if problems:
        raise ConfigError("\n".join(problems))
