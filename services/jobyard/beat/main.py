"""`jobyard beat`: the one process that sends schedules and releases delayed jobs.

Any number of beats may run (a rolling update overlaps two); the one holding the Redis
lease leads, the others stand by and try to take the lease every tick. Each tick the
leader:

1. renews its lease (a standby tries to take it),
2. writes `keys.BEAT_LAST_TICK`,
3. sends due schedules (`jobyard.beat.sender`),
4. moves due delayed jobs to their queues (`jobyard.beat.delayed`),
5. every `restore_interval_s`, puts expired unacked messages back (`jobyard.beat.unacked`),
6. every `orphan_check_interval_s`, publishes again jobs whose message was lost in transit
   (`jobyard.beat.orphans`).

Losses after a leader dies: a standby takes over at most `lease_ttl_s + tick_s` after the
leader's last renewal; the runs that fell due meanwhile are merged into one catch-up run
(`missed: run-once`, or `skip` when within `missed_grace_s`), so a schedule of interval
`i` loses at most `ceil((lease_ttl_s + tick_s) / i) - 1` runs, and none is ever sent twice.
A clean shutdown releases the lease at once and loses nothing.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

import kombu.exceptions
import redis
from celery import Celery

from jobyard.beat.delayed import DelayedJobs
from jobyard.beat.lease import Lease, new_beat_id
from jobyard.beat.orphans import OrphanSweeper
from jobyard.beat.sender import ScheduleSender
from jobyard.beat.state import BeatState
from jobyard.beat.unacked import UnackedRestorer
from jobyard.beat.validation import validate_schedules
from jobyard.core import keys
from jobyard.core.bootstrap import Runtime
from jobyard.core.celery_app import create_celery
from jobyard.core.redis import sync_client
from jobyard.observability.exposition import serve_beat_metrics, stop_metrics_server
from jobyard.observability.logging import configure_logging

log = logging.getLogger("jobyard.beat")

_BROKER_ERRORS = (redis.RedisError, kombu.exceptions.OperationalError)


class Beat:
    """One beat process's tick: leadership, then the leader's work."""

    def __init__(
        self,
        runtime: Runtime,
        client: redis.Redis,
        app: Celery,
        *,
        state: BeatState | None = None,
    ) -> None:
        self.config = runtime.config
        self.client = client
        self.state = state or BeatState(new_beat_id())
        beat = runtime.config.beat
        self.lease = Lease(client, self.state.beat_id, beat.lease_ttl_s)
        self.sender = ScheduleSender(client, app, runtime.config, runtime.registry, self.state)
        self.delayed = DelayedJobs(client)
        self.restorer = UnackedRestorer(app, client, runtime.config.visibility_timeout_s)
        self.orphans = OrphanSweeper(app, client, runtime.config, runtime.registry)
        self._leading = False
        self._redis_ok = True
        self._next_restore_at = 0.0
        self._next_orphan_check_at = 0.0

    def tick(self) -> None:
        """Renew or try the lease; when leading, do the leader's work."""
        now = time.time()
        try:
            leading = self.lease.hold()
        except redis.RedisError as exc:
            self._broker_down(exc)
            return
        self._broker_up()
        self._leadership(leading, now)
        if not leading:
            return
        try:
            self._lead(now)
        except _BROKER_ERRORS as exc:
            self._broker_down(exc)

    def shutdown(self) -> None:
        """Release the lease if held, so a standby takes over at its next tick."""
        self.state.is_leader = False
        if not self.lease.held:
            return
        try:
            released = self.lease.release()
        except redis.RedisError as exc:
            log.warning("could not release the beat lease (it expires by itself): %s", exc)
            return
        if released:
            log.info(
                "leader released the lease: beat %s",
                self.state.beat_id,
                extra={"beat_id": self.state.beat_id},
            )

    def _lead(self, now: float) -> None:
        beat = self.config.beat
        self.client.set(keys.BEAT_LAST_TICK, repr(now))
        self.state.last_tick_at = now
        self.sender.tick(now)
        promotion = self.delayed.promote_due(now, budget_s=beat.tick_s)
        if promotion.promoted or promotion.dropped:
            self.state.delayed_promoted += promotion.promoted
            self.state.delayed_dropped += promotion.dropped
            log.info(
                "promoted %d delayed job(s) to their queues, dropped %d no longer scheduled",
                promotion.promoted,
                promotion.dropped,
                extra={"promoted": promotion.promoted, "dropped": promotion.dropped},
            )
        if time.monotonic() >= self._next_orphan_check_at:
            self._next_orphan_check_at = time.monotonic() + beat.orphan_check_interval_s
            self.state.orphans_republished += self.orphans.check(now)
        if time.monotonic() >= self._next_restore_at:
            self._next_restore_at = time.monotonic() + beat.restore_interval_s
            restored = self.restorer.restore_expired(now)
            if restored:
                self.state.unacked_restored += restored
                log.warning(
                    "restored %d unacked message(s) older than the visibility timeout (%g s)",
                    restored,
                    self.restorer.visibility_timeout_s,
                    extra={"restored": restored},
                )

    def _leadership(self, leading: bool, now: float) -> None:
        self.state.is_leader = leading
        if leading and not self._leading:
            self.state.leader_since = now
            log.info(
                "leader acquired: beat %s leads",
                self.state.beat_id,
                extra={"beat_id": self.state.beat_id},
            )
        elif self._leading and not leading:
            log.warning(
                "leader lost: beat %s no longer holds the lease",
                self.state.beat_id,
                extra={"beat_id": self.state.beat_id},
            )
        self._leading = leading

    def _broker_down(self, exc: Exception) -> None:
        self.state.is_leader = False
        if self._redis_ok:
            log.warning("Redis unavailable, beat waits for it: %s", exc)
        self._redis_ok = False

    def _broker_up(self) -> None:
        if not self._redis_ok:
            log.info("Redis reachable again")
        self._redis_ok = True


def run_beat(
    runtime: Runtime,
    *,
    state: BeatState | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Run beat until SIGTERM or SIGINT (or until `stop` is set), then release the lease.

    Raises ConfigError before starting when a schedule names an unknown task, arguments
    its job refuses, or a queue that is not configured.
    """
    configure_logging(runtime.settings, "beat")
    validate_schedules(runtime.config, runtime.registry, str(runtime.settings.config))
    stop = stop or threading.Event()
    client = sync_client(runtime.settings.redis_url)
    app = create_celery(runtime.settings, runtime.config, runtime.registry)
    beat = Beat(runtime, client, app, state=state)
    metrics_server = serve_beat_metrics(runtime.settings, lambda: beat.state.is_leader)
    restore_signals = _stop_on_signals(stop)
    cfg = runtime.config.beat
    log.info(
        "beat %s started: %d schedule(s), lease %g s, tick %g s",
        beat.state.beat_id,
        len(beat.sender.schedules),
        cfg.lease_ttl_s,
        cfg.tick_s,
        extra={"beat_id": beat.state.beat_id},
    )
    try:
        next_tick = time.monotonic()
        while not stop.is_set():
            beat.tick()
            next_tick += cfg.tick_s
            delay = next_tick - time.monotonic()
            if delay < 0:  # a slow tick: start the next one now, without catching up
                next_tick, delay = time.monotonic(), 0.0
            stop.wait(delay)
    finally:
        beat.shutdown()
        stop_metrics_server(metrics_server)
        restore_signals()
        app.close()
        log.info("beat %s stopped", beat.state.beat_id, extra={"beat_id": beat.state.beat_id})


def _stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGTERM and SIGINT set `stop` (main thread only); returns an undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: FrameType | None) -> None:
        # Not `stop.set()` here: the handler runs in the main thread, which may be inside
        # `stop.wait()` holding the Event's lock; setting it from here would deadlock.
        threading.Thread(target=stop.set, name="jobyard-beat-stop", daemon=True).start()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
