"""`kubectl jobyard status`: one row per queue (backlog, oldest job, running, dead
letters, workers, autoscaling) plus API and beat health."""

from __future__ import annotations

import email.utils
import sys
import time
from dataclasses import asdict
from typing import Any

import click
import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, ConfigDict, Field

from jobyard.client import ApiError, JobyardClient, QueueStats
from jobyard.kubectl import autoscaling as scaling
from jobyard.kubectl.common import connection_options, open_release, output_option
from jobyard.kubectl.errors import EXIT_FAILED, PluginError
from jobyard.kubectl.kube import Kube, Obj
from jobyard.kubectl.output import duration, emit, table
from jobyard.kubectl.proxy import ServiceProxyTransport, api_port, describe
from jobyard.kubectl.release import Release, name_of
from jobyard.kubectl.tokens import resolve

BEAT_TICK_METRIC = "jobyard_beat_last_tick_timestamp_seconds"


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Workload(_Out):
    """A Deployment's replicas."""

    deployment: str | None = Field(description="Name of the Deployment (null: none).")
    desired: int | None = Field(description="spec.replicas (null: no Deployment).")
    ready: int = Field(description="status.readyReplicas.")


class ApiHealth(Workload):
    reachable: bool = Field(description="The API answered through the service proxy.")
    error: str | None = Field(
        description="Why the queue figures are missing: no answer, or the API's error "
        "(401 without a token); null when they are there."
    )


class BeatHealth(Workload):
    strategy: str | None = Field(description="Deployment strategy (Recreate expected).")
    last_tick_age_s: float | None = Field(
        description="Seconds since the leading beat last ticked (from the API's /metrics); "
        "null when unknown."
    )


class AutoscalingOut(_Out):
    kind: str = Field(description="keda, hpa or none.")
    state: str = Field(
        description="keda: paused, error, fallback, active, idle, unknown; hpa: hpa; none: fixed."
    )
    scaled_object: str | None
    hpa: str | None
    ready: bool | None
    active: bool | None
    fallback: bool | None
    paused: bool
    paused_replicas: int | None
    min_replicas: int | None
    max_replicas: int | None
    hpa_desired_replicas: int | None
    errors: list[str]


class QueueStatus(_Out):
    name: str
    backlog: int | None = Field(
        description="Waiting jobs over every priority list (null: API unreachable)."
    )
    backlog_by_priority: dict[str, int] | None
    oldest_job_age_s: float | None
    in_progress: int | None
    dead_letters: int | None
    live_workers: int | None = Field(description="Workers with a recent heartbeat (API).")
    workers: Workload
    autoscaling: AutoscalingOut


class StatusReport(_Out):
    """`kubectl jobyard status -o json`."""

    release: str
    namespace: str
    fullname: str
    api: ApiHealth
    beat: BeatHealth
    queues: list[QueueStatus]


def workload(deployment: Obj | None) -> dict[str, Any]:
    if deployment is None:
        return {"deployment": None, "desired": None, "ready": 0}
    return {
        "deployment": name_of(deployment),
        "desired": int((deployment.get("spec") or {}).get("replicas", 1)),
        "ready": int((deployment.get("status") or {}).get("readyReplicas") or 0),
    }


def beat_tick_age_s(metrics: httpx.Response) -> float | None:
    """Age of the beat's last tick, against the API's clock (its Date header)."""
    tick: float | None = None
    for family in text_string_to_metric_families(metrics.text):
        if family.name == BEAT_TICK_METRIC:
            tick = max((s.value for s in family.samples), default=None)
    if tick is None:
        return None
    date = metrics.headers.get("date")
    now = email.utils.parsedate_to_datetime(date).timestamp() if date else time.time()
    return round(max(0.0, now - tick), 2)


def _queue_figures(queues: list[QueueStats] | None, name: str) -> dict[str, Any]:
    found = next((q for q in queues or [] if q.name == name), None)
    if found is None:
        keys = (
            "backlog",
            "backlog_by_priority",
            "oldest_job_age_s",
            "in_progress",
            "dead_letters",
            "live_workers",
        )
        return dict.fromkeys(keys)
    return {
        "backlog": found.depth,
        "backlog_by_priority": found.depth_by_priority,
        "oldest_job_age_s": found.oldest_job_age_s,
        "in_progress": found.in_progress,
        "dead_letters": found.dead_letters,
        "live_workers": found.workers,
    }


def gather(kube: Kube, release: Release, api_token: str | None) -> StatusReport:
    scaled_objects = scaling.list_scaled_objects(kube, release)
    hpas = scaling.by_target(scaling.list_hpas(kube))
    queues: list[QueueStats] | None = None
    tick_age: float | None = None
    error: str | None = None
    answered = False
    token = resolve(kube, release, api_token, write=False)
    try:
        transport = ServiceProxyTransport(
            kube, release, release.api_name, api_port(kube, release), token.value
        )
        with JobyardClient("http://jobyard-api", transport=transport) as client:
            queues = client.queues()
        with httpx.Client(base_url="http://jobyard-api", transport=transport) as http:
            metrics = http.get("/metrics")
        if metrics.status_code == 200:
            tick_age = beat_tick_age_s(metrics)
        answered = True
    except ApiError as exc:
        answered = True
        error = describe(exc, token.hint)
    except PluginError as exc:
        error = str(exc)
    names = [q.name for q in queues or []]
    names += [q for q in release.workers if q not in names]
    rows = []
    for name in names:
        deployment = release.workers.get(name)
        dname = release.worker_name(name)
        if scaled_objects is not None and dname in scaled_objects:
            auto = scaling.keda_state(scaled_objects[dname], hpas.get(dname))
        elif dname in hpas:
            auto = scaling.hpa_state(hpas[dname])
        else:
            auto = scaling.Autoscaling(kind="none", state="fixed")
        rows.append(
            QueueStatus(
                name=name,
                workers=Workload(**workload(deployment)),
                autoscaling=AutoscalingOut(**asdict(auto)),
                **_queue_figures(queues, name),
            )
        )
    beat = release.beat
    return StatusReport(
        release=release.name,
        namespace=release.namespace,
        fullname=release.fullname,
        api=ApiHealth(**workload(release.api), reachable=answered, error=error),
        beat=BeatHealth(
            **workload(beat),
            strategy=((beat or {}).get("spec") or {}).get("strategy", {}).get("type"),
            last_tick_age_s=tick_age,
        ),
        queues=rows,
    )


def _count(value: int | None) -> str:
    return "?" if value is None else str(value)


def _autoscaling_text(a: AutoscalingOut) -> str:
    if a.kind == "none":
        return "none (fixed replicas)"
    if a.kind == "hpa":
        return "hpa (cpu)"
    if a.state == "paused":
        return "paused" if a.paused_replicas is None else f"paused at {a.paused_replicas}"
    if a.state == "error":
        return f"error: {a.errors[0][:60]}" if a.errors else "error"
    return a.state


def _priorities(q: QueueStatus) -> str:
    if q.backlog_by_priority is None:
        return "?"
    busy = [f"{step}:{n}" for step, n in q.backlog_by_priority.items() if n]
    return " ".join(busy) or "-"


def _workload_text(w: Workload) -> str:
    return "missing" if w.desired is None else f"{w.ready}/{w.desired} ready"


def render_table(report: StatusReport) -> str:
    api = _workload_text(report.api)
    api += ", answering" if report.api.reachable else ", NOT answering"
    if report.api.reachable and report.api.error:
        api += " with an error"
    beat = _workload_text(report.beat)
    if report.beat.strategy and report.beat.strategy != "Recreate":
        beat += f", strategy {report.beat.strategy} (expected Recreate)"
    if report.beat.last_tick_age_s is not None:
        beat += f", last tick {duration(report.beat.last_tick_age_s)} ago"
    elif report.api.error is None:
        beat += ", no tick recorded"
    head = [
        f"RELEASE  {report.release} (namespace {report.namespace})",
        f"API      {api}",
        f"BEAT     {beat}",
        "",
    ]
    rows = [
        [
            q.name,
            _count(q.backlog),
            _priorities(q),
            "?" if q.backlog is None else duration(q.oldest_job_age_s),
            _count(q.in_progress),
            _count(q.dead_letters),
            "-" if q.workers.desired is None else f"{q.workers.ready}/{q.workers.desired}",
            _autoscaling_text(q.autoscaling),
            "-"
            if q.autoscaling.min_replicas is None
            else f"{q.autoscaling.min_replicas}-{q.autoscaling.max_replicas}",
        ]
        for q in report.queues
    ]
    body = table(
        [
            "QUEUE",
            "BACKLOG",
            "BY PRIORITY",
            "OLDEST",
            "RUNNING",
            "DEAD",
            "WORKERS",
            "AUTOSCALING",
            "MIN-MAX",
        ],
        rows,
        right={1, 3, 4, 5, 6},
    )
    lines = [*head, body]
    if report.api.error:
        lines += ["", f"API error: {report.api.error}"]
    return "\n".join(lines)


@click.command()
@connection_options
@output_option
@click.option(
    "--api-token",
    envvar="JOBYARD_API_TOKEN",
    default=None,
    metavar="TOKEN",
    help="jobyard API token (default: JOBYARD_API_TOKEN, else the release's Secret "
    "when RBAC allows).",
)
@click.pass_context
def status(ctx: click.Context, /, output: str, api_token: str | None, **_: Any) -> None:
    """Queues (backlog, oldest job, running, dead letters, workers, autoscaling), API and beat.

    Exit code 1 when the API did not answer or answered an error (401 without a token):
    the workload figures are still shown.
    """
    kube, release = open_release(ctx)
    report = gather(kube, release, api_token)
    if output == "table":
        click.echo(render_table(report))
    else:
        emit(report.model_dump(mode="json"), output)
    if report.api.error is not None:
        if output != "table":
            click.echo(f"kubectl jobyard: {report.api.error}", err=True)
        sys.exit(EXIT_FAILED)
