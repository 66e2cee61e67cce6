"""Queue state measured from Redis at scrape time (the API's `/metrics`).

One pipeline round trip per scrape reads every queue (`core.queues.plan_queue_stats`),
beat's last tick and every schedule's last run. Its cost grows with the number of queues,
priority steps and schedules, never with the backlog (LLEN, LINDEX -1, ZCOUNT, ZCARD,
GET). When Redis does not answer within a short timeout the scrape still succeeds with
`jobyard_redis_up 0` and no Redis-measured series; the configured alert thresholds are
exported either way.

Every API replica exports the same values: rules aggregate with `max by (queue)`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator

import redis
from prometheus_client.core import GaugeMetricFamily, Metric
from redis.backoff import NoBackoff
from redis.retry import Retry

from jobyard.core import keys
from jobyard.core.config import JobyardConfig
from jobyard.core.queues import QueueStats, parse_queue_stats, plan_queue_stats
from jobyard.core.schedules import next_run_at
from jobyard.core.settings import Settings
from jobyard.observability import metrics
from jobyard.observability.metrics import GaugeSpec

log = logging.getLogger("jobyard.metrics")

SCRAPE_REDIS_TIMEOUT_S = 1.0
"""Connect and read timeout of the scrape's Redis client: a hung Redis costs a scrape at
most this long (no retries)."""


def scrape_client(url: str, timeout_s: float = SCRAPE_REDIS_TIMEOUT_S) -> redis.Redis:
    """A Redis client for scrapes: short timeouts, no retries."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


def _family(spec: GaugeSpec) -> GaugeMetricFamily:
    return GaugeMetricFamily(spec.name, spec.documentation, labels=list(spec.labels))


class QueueCollector:
    """A prometheus-client collector that reads queue state when scraped."""

    def __init__(
        self,
        settings: Settings,
        config: JobyardConfig,
        client: redis.Redis | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.config = config
        self.client = client if client is not None else scrape_client(settings.redis_url)
        self.clock = clock
        self._redis_was_up = True

    def describe(self) -> Iterable[Metric]:
        """The families this collector exports (lets a registry check name clashes)."""
        return [_family(spec) for spec in metrics.SCRAPE_TIME_GAUGES]

    def collect(self) -> Iterator[Metric]:
        yield from self._thresholds()
        now = self.clock()
        pipe = self.client.pipeline(transaction=False)
        plan = plan_queue_stats(pipe, self.config, self.settings, now=now)
        pipe.get(keys.BEAT_LAST_TICK)
        for schedule in self.config.schedules:
            pipe.get(keys.schedule_last_run(schedule.name))
        try:
            results = pipe.execute()
        except (redis.RedisError, OSError) as exc:
            if self._redis_was_up:
                log.warning("metrics scrape: Redis unavailable: %s", exc)
            self._redis_was_up = False
            up = _family(metrics.REDIS_UP)
            up.add_metric([], 0)
            yield up
            return
        self._redis_was_up = True
        up = _family(metrics.REDIS_UP)
        up.add_metric([], 1)
        yield up
        yield from self._queues(parse_queue_stats(plan, results))
        rest = results[plan.first_index + plan.commands_per_queue * len(plan.queues) :]
        yield from self._beat(rest[0], rest[1:], now)

    def _thresholds(self) -> Iterator[Metric]:
        families = {field: _family(spec) for field, spec in metrics.QUEUE_ALERT_THRESHOLDS.items()}
        soft = _family(metrics.QUEUE_SOFT_TIME_LIMIT)
        for queue in self.config.queues:
            for field, family in families.items():
                family.add_metric([queue.name], float(getattr(queue.alerts, field)))
            soft.add_metric([queue.name], queue.soft_time_limit_s)
        yield from families.values()
        yield soft

    def _queues(self, stats: list[QueueStats]) -> Iterator[Metric]:
        depth = _family(metrics.QUEUE_DEPTH)
        oldest = _family(metrics.QUEUE_OLDEST_JOB_AGE)
        running = _family(metrics.QUEUE_IN_PROGRESS)
        dead = _family(metrics.QUEUE_DEAD_LETTERS)
        workers = _family(metrics.QUEUE_WORKERS)
        for s in stats:
            depth.add_metric([s.name], s.depth)
            oldest.add_metric([s.name], s.oldest_job_age_s or 0.0)
            running.add_metric([s.name], s.in_progress)
            dead.add_metric([s.name], s.dead_letters)
            workers.add_metric([s.name], s.workers)
        yield from (depth, oldest, running, dead, workers)

    def _beat(
        self, last_tick: bytes | None, last_runs: list[bytes | None], now: float
    ) -> Iterator[Metric]:
        tick = _family(metrics.BEAT_LAST_TICK)
        parsed_tick = _timestamp(last_tick)
        if parsed_tick is not None:
            tick.add_metric([], parsed_tick)
        yield tick
        last = _family(metrics.SCHEDULE_LAST_RUN)
        nxt = _family(metrics.SCHEDULE_NEXT_RUN)
        for schedule, raw in zip(self.config.schedules, last_runs, strict=True):
            last_run = _timestamp(raw)
            if last_run is not None:
                last.add_metric([schedule.name], last_run)
            if schedule.enabled:
                nxt.add_metric([schedule.name], next_run_at(schedule, last_run, now))
        yield last
        yield nxt


def _timestamp(raw: bytes | str | None) -> float | None:
    """A unix time as beat stores it (`repr` of a float); None when absent or unreadable."""
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None
