"""Helpers of the observability tests: free ports, scrapes, samples, enqueueing, promtool."""

from __future__ import annotations

import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import redis
from prometheus_client.parser import text_string_to_metric_families

from jobyard.core import store
from jobyard.core.bootstrap import Runtime, bootstrap
from jobyard.core.celery_app import create_celery
from jobyard.core.enqueue import EnqueueRequest, prepare

OBS_JOBS = "tests.support.obs_jobs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(url: str, timeout_s: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        assert resp.status == 200
        return str(resp.read().decode())


def try_scrape(url: str) -> str | None:
    try:
        return scrape(url, timeout_s=2)
    except OSError:
        return None


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition, keyed by (sample name, labels)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(parsed: Samples, name: str, **labels: str) -> float | None:
    return parsed.get((name, frozenset(labels.items())))


def series(parsed: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in parsed.items() if n == name}


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    """`promtool check metrics` on an exposition (lint problems go to its output)."""
    return subprocess.run(
        ["promtool", "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


class Producer:
    """Enqueues jobs the way the API does (record and message in one transaction)."""

    def __init__(self, redis_url: str, config_path: Path, job_modules: str = OBS_JOBS) -> None:
        self.runtime: Runtime = bootstrap(
            {
                "JOBYARD_REDIS_URL": redis_url,
                "JOBYARD_CONFIG": str(config_path),
                "JOBYARD_JOB_MODULES": job_modules,
            }
        )
        self.app = create_celery(self.runtime.settings, self.runtime.config, self.runtime.registry)
        self.client = redis.Redis.from_url(redis_url)

    def enqueue(self, task: str, *, now: float | None = None, **kwargs: Any) -> str:
        job = prepare(
            self.app,
            self.runtime.config,
            self.runtime.registry,
            EnqueueRequest(task, **kwargs),
            now=now,
        )
        pipe = self.client.pipeline()
        store.plan_enqueue(pipe, job.record, job.message, result_ttl_s=3600)
        pipe.execute()
        return job.record.id

    def close(self) -> None:
        self.client.close()
