"""Scale: 1,000,000 queued jobs across 10 queues. Redis memory per queued job, and the
latency of `GET /v1/queues` and of one `/metrics` scrape, empty and with the backlog.

The backlog is written the way producers write it: each job's commands are those
`store.plan_enqueue` plans for a real job (record hash, its TTL, the recent indexes, the
kombu message built by `messages.build_message`). `plan_enqueue` is run once per queue on
a recording pipeline; every job repeats those commands with its own ids (the message's
task id and delivery tag replaced), and the list and index writes of a chunk go as one
variadic LPUSH/ZADD, in big pipelines, from two processes.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import aiohttp
import redis as redis_py

from bench.redis_server import BenchRedis
from bench.systems.jobyard_system import SCALE_QUEUES, Jobyard

FILL_CHUNK = 5000
FILL_PROCESSES = 2


class RecordingPipe:
    """Stands in for a redis-py pipeline: remembers the commands planned on it."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> None:
            self.commands.append((name, args, kwargs))

        return record


@dataclass(frozen=True)
class Template:
    """One queue's job as `plan_enqueue` writes it, with the strings to replace per job."""

    job_id: str
    delivery_tag: str
    commands: list[tuple[str, tuple[Any, ...], dict[str, Any]]]


def template_for(system: Jobyard, queue: str) -> Template:
    from jobyard.core import store

    job = system.prepare("bench.noop", {}, queue=queue)
    pipe = RecordingPipe()
    store.plan_enqueue(
        pipe, job.record, job.message, result_ttl_s=system.runtime.config.limits.result_ttl_s
    )
    import json

    tag = json.loads(job.message.payload)["properties"]["delivery_tag"]
    return Template(job.record.id, tag, pipe.commands)


Render = Callable[[str, str], Any]


def _renderer(value: Any, job_id: str, tag: str) -> Render | None:
    """A function of (new id, new tag) giving `value` with the template's ids replaced;
    None when `value` holds neither."""
    if isinstance(value, str):
        if job_id not in value and tag not in value:
            return None
        fmt = value.replace("{", "{{").replace("}", "}}")
        fmt = fmt.replace(job_id, "{0}").replace(tag, "{1}")
        return fmt.format
    if isinstance(value, dict):
        static: dict[Any, Any] = {}
        dynamic: list[tuple[Render, Render]] = []
        for k, v in value.items():
            rk, rv = _renderer(k, job_id, tag), _renderer(v, job_id, tag)
            if rk is None and rv is None:
                static[k] = v
            else:
                dynamic.append((rk or _constant(k), rv or _constant(v)))
        if not dynamic:
            return None

        def render(new_id: str, new_tag: str) -> dict[Any, Any]:
            out = dict(static)
            for rk, rv in dynamic:
                out[rk(new_id, new_tag)] = rv(new_id, new_tag)
            return out

        return render
    return None


def _constant(value: Any) -> Render:
    return lambda _id, _tag: value


def clone_commands(
    template: Template, count: int
) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """The commands of `count` new jobs: per-job writes as they are, and one variadic
    ZADD / LPUSH per key for the index and list writes."""
    compiled = []
    for name, args, kwargs in template.commands:
        arg_renders = [
            _renderer(a, template.job_id, template.delivery_tag) or _constant(a) for a in args
        ]
        kw_renders = {
            k: _renderer(v, template.job_id, template.delivery_tag) or _constant(v)
            for k, v in kwargs.items()
        }
        compiled.append((name, arg_renders, kw_renders))
    per_job: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    zadds: dict[str, dict[str, float]] = {}
    lpushes: dict[str, list[str]] = {}
    for _ in range(count):
        new_id, new_tag = str(uuid.uuid4()), str(uuid.uuid4())
        for name, arg_renders, kw_renders in compiled:
            a = tuple(r(new_id, new_tag) for r in arg_renders)
            if name == "zadd" and not kw_renders:
                zadds.setdefault(a[0], {}).update(a[1])
            elif name == "lpush" and not kw_renders:
                lpushes.setdefault(a[0], []).extend(a[1:])
            else:
                k = {key: r(new_id, new_tag) for key, r in kw_renders.items()}
                per_job.append((name, a, k))
    merged = list(per_job)
    merged.extend(("zadd", (key, members), {}) for key, members in zadds.items())
    merged.extend(("lpush", (key, *values), {}) for key, values in lpushes.items())
    return merged


def _fill_queues(url: str, templates: list[Template], per_queue: int) -> int:
    client = redis_py.Redis.from_url(url, socket_timeout=300)
    written = 0
    for template in templates:
        done = 0
        while done < per_queue:
            size = min(FILL_CHUNK, per_queue - done)
            pipe = client.pipeline(transaction=False)
            for name, args, kwargs in clone_commands(template, size):
                getattr(pipe, name)(*args, **kwargs)
            pipe.execute()
            done += size
        written += done
    client.close()
    return written


def fill_backlog(system: Jobyard, total_jobs: int, queues: tuple[str, ...] = SCALE_QUEUES) -> float:
    """Write `total_jobs` queued jobs spread evenly over `queues`; returns seconds taken."""
    templates = [template_for(system, q) for q in queues]
    per_queue = total_jobs // len(queues)
    start = time.perf_counter()
    groups = [templates[i::FILL_PROCESSES] for i in range(FILL_PROCESSES)]
    with ProcessPoolExecutor(FILL_PROCESSES) as pool:
        futures = [
            pool.submit(_fill_queues, system.env.redis.url, g, per_queue) for g in groups if g
        ]
        written = sum(f.result() for f in futures)
    if written != per_queue * len(queues):
        raise RuntimeError(f"wrote {written} jobs, expected {per_queue * len(queues)}")
    return time.perf_counter() - start


async def _median_ms(url: str, samples: int) -> float:
    times: list[float] = []
    async with aiohttp.ClientSession() as session:
        for _ in range(samples):
            t0 = time.perf_counter()
            async with session.get(url) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"GET {url}: {resp.status}")
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def endpoint_latency_ms(base_url: str, samples: int) -> dict[str, float]:
    """Median of `samples` sequential requests to each endpoint."""
    return {
        "queues_ms": asyncio.run(_median_ms(f"{base_url}/v1/queues", samples)),
        "metrics_ms": asyncio.run(_median_ms(f"{base_url}/metrics", samples)),
    }


def run_scale(
    system: Jobyard, redis: BenchRedis, base_url: str, *, total_jobs: int, samples: int
) -> dict[str, Any]:
    """Measure with an empty Redis, fill the backlog, measure again."""
    redis.reset()
    empty = endpoint_latency_ms(base_url, samples)
    memory_before = redis.used_memory()
    fill_s = fill_backlog(system, total_jobs)
    memory_after = redis.used_memory()
    depth = sum(int(redis.client.llen(q)) for q in SCALE_QUEUES)
    full = endpoint_latency_ms(base_url, samples)
    return {
        "queued_jobs": depth,
        "fill_s": fill_s,
        "bytes_per_job": (memory_after - memory_before) / depth,
        "empty": empty,
        "backlog": full,
    }
