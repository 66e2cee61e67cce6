"""Runs the workloads, systems interleaved (A B A B), and collects every measurement."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.machine import machine_info
from bench.plan import Plan
from bench.redis_server import BenchRedis
from bench.stats import summary
from bench.systems import BASELINE, MULTI, SYSTEMS, BenchEnv, BenchError, System
from bench.systems.base import ROOT
from bench.systems.flower_system import Flower
from bench.systems.jobyard_system import Jobyard, JobyardApi
from bench.workloads.drain import run_drain
from bench.workloads.http_enqueue import BATCH_SIZE, Target, run_http, wait_http_ready
from bench.workloads.latency import Phase, run_latency
from bench.workloads.scale import run_scale

WORKLOADS = ("drain", "latency", "http", "scale")
DRAIN_METRICS = (
    "jobs_per_s",
    "cpu_us_per_job",
    "redis_commands_per_job",
    "peak_rss_mib",
    "peak_pss_mib",
)
LATENCY_METRICS = ("p50_ms", "p95_ms", "p99_ms", "max_ms", "achieved_rate_per_s")
HTTP_METRICS = ("jobs_per_s", "requests_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_job")

MAIN_SYSTEMS = ("jobyard", BASELINE)
"""Drained to the end (up to `drain_max_s`); the others are cut at `peer_drain_max_s`."""

Log = Callable[[str], None]


def _summarise(runs: list[dict[str, Any]], metrics: tuple[str, ...]) -> dict[str, Any]:
    ok = [r for r in runs if "error" not in r]
    out: dict[str, Any] = {"runs": runs}
    for m in metrics:
        values = [r[m] for r in ok if m in r]
        if values:
            out[m] = summary(values)
    return out


class Runner:
    """One benchmark run in a fresh work directory with its own redis-server."""

    def __init__(
        self, plan: Plan, systems: list[str], workloads: list[str], log: Log = print
    ) -> None:
        unknown = [s for s in systems if s not in SYSTEMS and s != "flower"]
        if unknown:
            raise ValueError(
                f"unknown system(s) {', '.join(unknown)}; known: {', '.join([*SYSTEMS, 'flower'])}"
            )
        bad = [w for w in workloads if w not in WORKLOADS]
        if bad:
            raise ValueError(f"unknown workload(s) {', '.join(bad)}; known: {', '.join(WORKLOADS)}")
        self.plan = plan
        self.system_names = [s for s in SYSTEMS if s in systems]
        self.with_flower = "flower" in systems
        self.workloads = [w for w in WORKLOADS if w in workloads]
        self.log = log
        self.workdir = Path(tempfile.mkdtemp(prefix="jobyard-bench-"))

    def run(self) -> dict[str, Any]:
        started = time.time()
        redis = BenchRedis(self.workdir).start()
        os.environ["BENCH_REDIS_URL"] = redis.url
        env = BenchEnv(redis=redis, workdir=self.workdir)
        report: dict[str, Any] = {
            "plan": self.plan.__dict__,
            "machine": machine_info(ROOT, redis.version()),
            "systems": {},
            "started_at": started,
        }
        adapters: dict[str, System] = {}
        try:
            adapters = {name: SYSTEMS[name](env) for name in self.system_names}
            report["systems"] = {n: a.description for n, a in adapters.items()}
            if self.with_flower:
                report["systems"]["flower"] = Flower.description
            if "drain" in self.workloads:
                report["drain"] = self.drain(adapters, redis)
            if "latency" in self.workloads:
                report["latency"] = self.latency(adapters, redis, report.get("drain", {}))
            if "http" in self.workloads:
                report["http"] = self.http(env, redis)
            if "scale" in self.workloads:
                report["scale"] = self.scale(env, redis)
        finally:
            for adapter in adapters.values():
                adapter.close()
            redis.stop()
            report["machine"]["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
            report["duration_s"] = time.time() - started
            shutil.rmtree(self.workdir, ignore_errors=True)
        return report

    def _measure(self, what: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        t0 = time.monotonic()
        try:
            result = fn()
        except BenchError as exc:
            self.log(f"  {what}: FAILED: {exc}")
            return {"error": str(exc)}
        except Exception as exc:
            self.log(f"  {what}: FAILED: {traceback.format_exc()}")
            return {"error": f"{type(exc).__name__}: {exc}"}
        self.log(f"  {what}: {_brief(result)} ({time.monotonic() - t0:.1f} s)")
        return result

    def drain(self, adapters: dict[str, System], redis: BenchRedis) -> dict[str, Any]:
        p = self.plan
        self.log(f"drain: {p.drain_jobs} no-op jobs, modes {', '.join(p.drain_modes)}")
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for rep in range(p.reps):
            for mode in p.drain_modes:
                for name, system in adapters.items():
                    if mode not in system.modes:
                        continue
                    cap_s = p.drain_max_s if name in MAIN_SYSTEMS else p.peer_drain_max_s
                    result = self._measure(
                        f"{name} {mode} #{rep + 1}",
                        lambda s=system, m=mode, r=rep, c=cap_s: run_drain(
                            s, redis, mode=m, n=p.drain_jobs, max_drain_s=c, tag=f"{r}"
                        ),
                    )
                    runs.setdefault(name, {}).setdefault(mode, []).append(result)
        return {
            name: {mode: _summarise(rs, DRAIN_METRICS) for mode, rs in modes.items()}
            for name, modes in runs.items()
        }

    def _saturation_rate(self, name: str, drain: dict[str, Any]) -> float:
        p = self.plan
        rate = drain.get(name, {}).get(MULTI, {}).get("jobs_per_s", {}).get("median")
        return p.saturation_fraction * rate if rate else p.saturation_default_rate_per_s

    def latency(
        self, adapters: dict[str, System], redis: BenchRedis, drain: dict[str, Any]
    ) -> dict[str, Any]:
        p = self.plan
        self.log(
            f"latency: {p.latency_rate_per_s:g}/s for {p.latency_duration_s:g} s, then "
            f"{p.saturation_fraction:.0%} of each system's drain rate for "
            f"{p.saturation_duration_s:g} s (worker: {MULTI})"
        )
        runs: dict[str, list[dict[str, Any]]] = {}
        for rep in range(p.reps):
            for name, system in adapters.items():
                if name in p.latency_skip:
                    continue
                phases = [
                    Phase("fixed", p.latency_rate_per_s, p.latency_duration_s),
                    Phase(
                        "near_saturation",
                        round(self._saturation_rate(name, drain)),
                        p.saturation_duration_s,
                    ),
                ]
                result = self._measure(
                    f"{name} #{rep + 1}",
                    lambda s=system, ph=phases, r=rep: run_latency(s, redis, phases=ph, tag=f"{r}"),
                )
                runs.setdefault(name, []).append(result)
        out: dict[str, Any] = {}
        for name, rs in runs.items():
            out[name] = {"runs": rs}
            for phase in ("fixed", "near_saturation"):
                phase_runs = [r[phase] for r in rs if phase in r and r[phase].get("samples")]
                out[name][phase] = _summarise(phase_runs, (*LATENCY_METRICS, "rate_per_s"))
                out[name][phase].pop("runs")
        return out

    def http(self, env: BenchEnv, redis: BenchRedis) -> dict[str, Any]:
        p = self.plan
        self.log(f"http: {p.http_clients} concurrent clients, {p.http_duration_s:g} s each")
        api = JobyardApi(Jobyard(env))
        servers = {"jobyard": (api.base_url + "/readyz", api.start("http-jobyard-api"))}
        targets = [
            Target(
                "jobyard",
                "jobyard POST /v1/jobs",
                f"{api.base_url}/v1/jobs",
                {"task": "bench.noop", "args": {}},
                1,
                201,
            ),
            Target(
                "jobyard",
                f"jobyard POST /v1/jobs:batch ({BATCH_SIZE})",
                f"{api.base_url}/v1/jobs:batch",
                {"jobs": [{"task": "bench.noop", "args": {}}] * BATCH_SIZE},
                BATCH_SIZE,
                201,
            ),
        ]
        if self.with_flower:
            flower = Flower(env)
            servers["flower"] = (flower.base_url + "/healthcheck", flower.start("http-flower"))
            path, body = flower.single_request()
            targets.append(
                Target("flower", "flower async-apply", flower.base_url + path, body, 1, 200)
            )
        runs: dict[str, list[dict[str, Any]]] = {}
        try:
            for url, group in servers.values():
                wait_http_ready(url, group)
            for rep in range(p.reps):
                for target in targets:
                    result = self._measure(
                        f"{target.name} #{rep + 1}",
                        lambda t=target: run_http(
                            t,
                            redis,
                            servers[t.server][1],
                            clients=p.http_clients,
                            duration_s=p.http_duration_s,
                        ),
                    )
                    runs.setdefault(target.name, []).append(result)
        finally:
            for _url, group in servers.values():
                group.stop()
        return {name: _summarise(rs, HTTP_METRICS) for name, rs in runs.items()}

    def scale(self, env: BenchEnv, redis: BenchRedis) -> dict[str, Any]:
        p = self.plan
        self.log(f"scale: {p.scale_jobs} queued jobs over 10 queues")
        system = Jobyard(env)
        api = JobyardApi(system)
        group = api.start("scale-jobyard-api")
        try:
            wait_http_ready(api.base_url + "/readyz", group)
            result = self._measure(
                "jobyard",
                lambda: run_scale(
                    system, redis, api.base_url, total_jobs=p.scale_jobs, samples=p.scale_samples
                ),
            )
        finally:
            group.stop()
            system.close()
            redis.reset()
        return result


def _brief(result: dict[str, Any]) -> str:
    parts = []
    for key, value in result.items():
        if isinstance(value, float):
            parts.append(f"{key}={value:.4g}")
        elif isinstance(value, int) and not isinstance(value, bool):
            parts.append(f"{key}={value}")
        elif isinstance(value, dict) and key in ("fixed", "near_saturation", "empty", "backlog"):
            parts.append(f"{key}[{_brief(value)}]")
    return " ".join(parts)
