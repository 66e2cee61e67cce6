"""SIGTERM (Kubernetes, a KEDA scale-down): stop taking jobs, let running ones finish within
the queue's `shutdown_grace_s`, then shut down, requeueing whatever still runs.

Celery's own soft shutdown (SIGTERM remapped to SIGQUIT, `worker_soft_shutdown_timeout`)
waits inside the signal handler, on the main thread: the event loop that receives results
from the prefork children is blocked, so Celery cannot see that a job finished and always
waits the whole grace. jobyard instead answers SIGTERM by stopping consumption and
watching the running jobs from a thread while the event loop carries on (results are
received and acknowledged as usual). When none is left, or when the grace runs out, the
thread sends the process SIGQUIT: Celery's cold shutdown then requeues anything still
running at once (not after the visibility timeout) and puts back unstarted messages the
worker held (retries waiting for their countdown). A second SIGTERM skips the wait.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from types import FrameType
from typing import Any

import redis

from jobyard.core import keys, store
from jobyard.core.records import JobError
from jobyard.core.redis import sync_client

log = logging.getLogger("jobyard.worker")

POLL_S = 0.05


def soft_shutdown_worker_class(app: Any) -> Any:
    """Celery's Worker class of `app`, with jobyard's SIGTERM handling."""
    from celery import platforms
    from celery.worker import state

    class Worker(app.Worker):  # type: ignore[misc]
        _draining = False
        _grace_spent = False

        def install_platform_tweaks(self, worker: Any) -> None:
            super().install_platform_tweaks(worker)
            platforms.signals["SIGTERM"] = self._on_sigterm

        def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
            if self._draining:
                log.warning("second SIGTERM: shutting down now, requeueing running jobs")
                self._cold_shutdown()
                return
            self._draining = True
            _stop_consuming(self)
            threading.Thread(target=self._drain, name="jobyard-drain", daemon=True).start()

        def _drain(self) -> None:
            timeout_s = float(self.app.conf.worker_soft_shutdown_timeout or 0)
            running = len(state.active_requests)
            if running and timeout_s > 0:
                log.warning(
                    "SIGTERM: no new jobs; waiting up to %g s for %d running job(s)",
                    timeout_s,
                    running,
                )
                deadline = time.monotonic() + timeout_s
                while state.active_requests and time.monotonic() < deadline:
                    time.sleep(POLL_S)
                left = len(state.active_requests)
                if left:
                    log.warning(
                        "shutdown grace of %g s over: requeueing %d running job(s)",
                        timeout_s,
                        left,
                    )
            self._cold_shutdown()

        def _cold_shutdown(self) -> None:
            self._grace_spent = True
            os.kill(os.getpid(), signal.SIGQUIT)

        def wait_for_soft_shutdown(self) -> None:
            # Reached from Celery's SIGQUIT handler, just before it cancels the running jobs.
            # After a SIGTERM the grace is spent already; a SIGQUIT sent directly gets
            # Celery's blind wait, bounded by the grace.
            timeout_s = float(self.app.conf.worker_soft_shutdown_timeout or 0)
            if not self._grace_spent and timeout_s > 0 and state.active_requests:
                log.warning(
                    "SIGQUIT: waiting %g s for %d running job(s)",
                    timeout_s,
                    len(state.active_requests),
                )
                time.sleep(timeout_s)
            give_back_running(self.app, timeout_s)

    return Worker


def give_back_running(app: Any, grace_s: float) -> int:
    """Mark the jobs Celery is about to cancel (and requeue) as queued again.

    Celery cancels an unacknowledged late-ack request unless it already succeeded; its
    message goes back to the queue, but no task signal fires, so the record would say
    `started` until the job runs again. Returns how many records changed.
    """
    from celery.worker import state

    requests = [
        r
        for r in tuple(state.active_requests)
        if not r.acknowledged and r.id not in state.successful_requests
    ]
    if not requests:
        return 0
    error = JobError(
        type="WorkerShutdown",
        message=f"its worker shut down before the job finished (grace {grace_s:g} s); "
        "requeued to run again",
    ).model_dump_json()
    client = sync_client(app.jobyard_settings.redis_url)
    script = client.register_script(store.GIVE_BACK_SCRIPT)
    changed = 0
    for request in requests:
        queue = (request.delivery_info or {}).get("routing_key") or app.conf.task_default_queue
        try:
            changed += int(
                script(keys=[keys.job(request.id), keys.running(queue)], args=[request.id, error])
            )
        except redis.RedisError as exc:
            log.warning("could not mark job %s requeued: %s", request.id, exc)
    if changed:
        log.warning("requeued %d running job(s) at shutdown", changed)
    return changed


def _stop_consuming(worker: Any) -> None:
    """Take no new message: the Redis poller asks `can_consume()` before each BRPOP.

    A reply already on its way is kept by kombu unread and restored when the channel closes.
    """
    consumer = getattr(worker, "consumer", None)
    task_consumer = getattr(consumer, "task_consumer", None)
    channel = getattr(task_consumer, "channel", None)
    qos = getattr(channel, "qos", None)
    if qos is not None:
        qos.can_consume = lambda: False
