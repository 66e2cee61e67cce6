"""`pause`, `resume` and `drain`: stop and start a queue's consumption.

With KEDA, all three act on the queue's ScaledObject through its pause annotations (see
:mod:`jobyard.kubectl.autoscaling`). Without KEDA (no ScaledObject), `--scale` patches
the Deployment's replicas instead and records the previous count in the annotation
`jobyard.io/replicas-before-pause`, which `resume` restores.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from jobyard.client import ApiError, JobyardClient
from jobyard.kubectl import autoscaling as scaling
from jobyard.kubectl.common import connection_options, open_release, output_option
from jobyard.kubectl.errors import EXIT_TIMEOUT, PluginError
from jobyard.kubectl.kube import Kube, Obj
from jobyard.kubectl.output import emit
from jobyard.kubectl.proxy import api_client, describe
from jobyard.kubectl.rbac import LIST_PODS, PATCH_DEPLOYMENTS, PATCH_SCALEDOBJECTS
from jobyard.kubectl.release import Release
from jobyard.kubectl.tokens import resolve

REPLICAS_BEFORE_PAUSE = "jobyard.io/replicas-before-pause"


def _patch_scaled_object(kube: Kube, name: str, body: dict[str, Any]) -> None:
    kube.raw(
        PATCH_SCALEDOBJECTS,
        kube.custom.patch_namespaced_custom_object,
        scaling.KEDA_GROUP,
        scaling.KEDA_VERSION,
        kube.namespace,
        scaling.SCALEDOBJECTS,
        name,
        body,
        name=name,
        _content_type=scaling.MERGE_PATCH,
    )


def _patch_deployment(kube: Kube, name: str, body: dict[str, Any]) -> None:
    kube.raw(
        PATCH_DEPLOYMENTS,
        kube.apps.patch_namespaced_deployment,
        name,
        kube.namespace,
        body,
        name=name,
        _content_type=scaling.MERGE_PATCH,
    )


def _no_keda(queue: str, name: str, action: str) -> PluginError:
    return PluginError(
        f"queue {queue!r} is not autoscaled by KEDA (no ScaledObject {name!r}): there is no "
        f"autoscaling to pause. To stop its workers anyway, scale the Deployment: "
        f"`kubectl jobyard {action} {queue} --scale` (`kubectl jobyard resume {queue}` "
        "scales it back)"
    )


def pause_queue(
    kube: Kube,
    release: Release,
    queue: str,
    *,
    replicas: int | None,
    keep_replicas: bool,
    scale: bool,
    action: str = "pause",
) -> dict[str, Any]:
    """Pause the queue; what was done, as a result object."""
    deployment = release.worker(queue)
    name = release.worker_name(queue)
    scaled_object = scaling.get_scaled_object(kube, name)
    if scaled_object is not None:
        if scale:
            raise PluginError(
                f"--scale is for queues without KEDA; queue {queue!r} has the ScaledObject "
                f"{name!r}: pause it without --scale"
            )
        target = None if keep_replicas else (0 if replicas is None else replicas)
        patch = scaling.pause_patch(target)
        _patch_scaled_object(kube, name, patch)
        return {
            "queue": queue,
            "action": "paused",
            "via": "keda",
            "scaled_object": name,
            "deployment": name,
            "annotations": patch["metadata"]["annotations"],
            "replicas": target,
        }
    if not scale:
        raise _no_keda(queue, name, action)
    if keep_replicas:
        raise PluginError("--keep-replicas needs KEDA (the ScaledObject's paused annotation)")
    target = 0 if replicas is None else replicas
    current = int((deployment.get("spec") or {}).get("replicas", 1))
    before = scaling.annotations_of(deployment).get(REPLICAS_BEFORE_PAUSE, str(current))
    patch = {
        "metadata": {"annotations": {REPLICAS_BEFORE_PAUSE: before}},
        "spec": {"replicas": target},
    }
    _patch_deployment(kube, name, patch)
    return {
        "queue": queue,
        "action": "paused",
        "via": "deployment",
        "scaled_object": None,
        "deployment": name,
        "annotations": patch["metadata"]["annotations"],
        "replicas": target,
    }


def _describe_pause(result: dict[str, Any]) -> str:
    queue, name, replicas = result["queue"], result["deployment"], result["replicas"]
    if result["via"] == "keda":
        if replicas is None:
            how = f"{scaling.PAUSED}=true: KEDA keeps deploy/{name} at its current replicas"
        else:
            how = (
                f"{scaling.PAUSED_REPLICAS}={replicas}: KEDA scales deploy/{name} to "
                f"{replicas} and holds it there"
            )
        return (
            f"paused autoscaling of queue {queue!r}: ScaledObject {result['scaled_object']} "
            f"annotated {how}. Waiting jobs stay in Redis."
        )
    before = result["annotations"][REPLICAS_BEFORE_PAUSE]
    return (
        f"scaled deploy/{name} to {replicas} replicas (queue {queue!r} has no KEDA); "
        f"`kubectl jobyard resume {queue}` scales it back to {before}. Waiting jobs stay in Redis."
    )


def _emit(result: dict[str, Any], text: str, output: str) -> None:
    if output == "table":
        click.echo(text)
    else:
        emit(result, output)


@click.command()
@click.argument("queue")
@click.option(
    "--replicas",
    type=click.IntRange(min=0),
    default=None,
    help="Hold the queue at N workers (autoscaling.keda.sh/paused-replicas; default 0).",
)
@click.option(
    "--keep-replicas",
    is_flag=True,
    help="Hold the current worker count (autoscaling.keda.sh/paused=true).",
)
@click.option(
    "--scale",
    is_flag=True,
    help="Queue without KEDA: scale its Deployment to --replicas (default 0).",
)
@connection_options
@output_option
@click.pass_context
def pause(
    ctx: click.Context,
    /,
    queue: str,
    replicas: int | None,
    keep_replicas: bool,
    scale: bool,
    output: str,
    **_: Any,
) -> None:
    """Pause QUEUE's autoscaling: hold it at --replicas workers (default 0: stop consuming).

    With 0, KEDA scales the workers down: each gets SIGTERM, stops taking jobs, and its
    running jobs finish within the queue's shutdown grace or go back to the queue.
    """
    if keep_replicas and replicas is not None:
        raise click.UsageError("give --replicas N or --keep-replicas, not both")
    kube, release = open_release(ctx)
    result = pause_queue(
        kube, release, queue, replicas=replicas, keep_replicas=keep_replicas, scale=scale
    )
    _emit(result, _describe_pause(result), output)


@click.command()
@click.argument("queue")
@connection_options
@output_option
@click.pass_context
def resume(ctx: click.Context, /, queue: str, output: str, **_: Any) -> None:
    """Resume QUEUE's autoscaling (remove KEDA's pause annotations), or scale a queue paused
    with `--scale` back to its previous replicas."""
    kube, release = open_release(ctx)
    deployment = release.worker(queue)
    name = release.worker_name(queue)
    scaled_object = scaling.get_scaled_object(kube, name)
    if scaled_object is not None:
        if not scaling.is_paused(scaled_object):
            result: dict[str, Any] = {
                "queue": queue,
                "action": "none",
                "via": "keda",
                "scaled_object": name,
            }
            _emit(
                result,
                f"queue {queue!r} is not paused (ScaledObject {name} has no pause "
                "annotation): nothing to do",
                output,
            )
            return
        _patch_scaled_object(kube, name, scaling.resume_patch())
        spec = scaled_object.get("spec") or {}
        result = {
            "queue": queue,
            "action": "resumed",
            "via": "keda",
            "scaled_object": name,
            "removed": [scaling.PAUSED, scaling.PAUSED_REPLICAS],
        }
        _emit(
            result,
            (
                f"resumed autoscaling of queue {queue!r}: removed {scaling.PAUSED} and "
                f"{scaling.PAUSED_REPLICAS} from ScaledObject {name}; KEDA scales deploy/{name} "
                f"between {spec.get('minReplicaCount', 0)} and "
                f"{spec.get('maxReplicaCount', 100)} again"
            ),
            output,
        )
        return
    before = scaling.annotations_of(deployment).get(REPLICAS_BEFORE_PAUSE)
    if before is None:
        raise PluginError(
            f"queue {queue!r} is not autoscaled by KEDA (no ScaledObject {name!r}) and was not "
            f"paused with `kubectl jobyard pause {queue} --scale`: nothing to resume "
            "(to change its workers: "
            f"`kubectl -n {kube.namespace} scale deploy/{name} --replicas=N`)"
        )
    _patch_deployment(
        kube,
        name,
        {
            "metadata": {"annotations": {REPLICAS_BEFORE_PAUSE: None}},
            "spec": {"replicas": int(before)},
        },
    )
    result = {
        "queue": queue,
        "action": "resumed",
        "via": "deployment",
        "deployment": name,
        "replicas": int(before),
    }
    _emit(result, f"scaled deploy/{name} back to {before} replicas (queue {queue!r})", output)


def _worker_pods(kube: Kube, release: Release, queue: str) -> list[Obj]:
    listed = kube.read(
        LIST_PODS,
        kube.core.list_namespaced_pod,
        kube.namespace,
        label_selector=release.selector("worker", queue),
    )
    return list(listed.get("items") or [])


def _in_progress(
    client: JobyardClient, queue: str, hint: str | None
) -> tuple[int | None, int | None, str | None]:
    try:
        stats = client.queue(queue)
    except ApiError as exc:
        return None, None, describe(exc, hint)
    except PluginError as exc:
        return None, None, str(exc)
    return stats.in_progress, stats.depth, None


@click.command()
@click.argument("queue")
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    default=900.0,
    show_default=True,
    help="Seconds to wait for the queue to drain (exit 3 after).",
)
@click.option("--no-wait", is_flag=True, help="Pause at 0 and return without waiting.")
@click.option("--scale", is_flag=True, help="Queue without KEDA: scale its Deployment to 0.")
@click.option(
    "--poll-interval",
    "poll_s",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    help="Seconds between two checks.",
)
@click.option(
    "--api-token",
    envvar="JOBYARD_API_TOKEN",
    default=None,
    metavar="TOKEN",
    help="jobyard API token (default: JOBYARD_API_TOKEN, else the release's Secret).",
)
@connection_options
@output_option
@click.pass_context
def drain(
    ctx: click.Context,
    /,
    queue: str,
    timeout_s: float,
    no_wait: bool,
    scale: bool,
    poll_s: float,
    api_token: str | None,
    output: str,
    **_: Any,
) -> None:
    """Stop QUEUE taking new work, for maintenance; wait until its running jobs are done.

    Pauses autoscaling at 0 workers (KEDA paused-replicas=0, or with --scale the Deployment
    at 0). Each worker gets SIGTERM and stops taking jobs at once; a running job finishes
    within the queue's shutdown grace or goes back to the queue (it runs again after
    `resume`). Waiting jobs stay in Redis; producers can still enqueue. Done when no
    worker pod is left and the API counts no job in progress. Undo: `resume QUEUE`.
    """
    kube, release = open_release(ctx)
    result = pause_queue(
        kube, release, queue, replicas=0, keep_replicas=False, scale=scale, action="drain"
    )
    if output == "table":
        click.echo(_describe_pause(result))
    if no_wait:
        if output != "table":
            emit({**result, "drained": None}, output)
        return
    token = resolve(kube, release, api_token, write=False)
    deadline = time.monotonic() + timeout_s
    last = ""
    with api_client(kube, release, token.value) as client:
        while True:
            pods = _worker_pods(kube, release, queue)
            running, backlog, error = _in_progress(client, queue, token.hint)
            if not pods and running == 0:
                break
            state = f"{len(pods)} worker pod(s), " + (
                f"{running} job(s) running" if error is None else f"jobs running unknown: {error}"
            )
            if state != last:
                click.echo(f"waiting: {state}", err=True)
                last = state
            if time.monotonic() >= deadline:
                click.echo(
                    f"kubectl jobyard: queue {queue!r} not drained after {timeout_s:g} s: {state}; "
                    "it stays paused at 0 workers",
                    err=True,
                )
                sys.exit(EXIT_TIMEOUT)
            time.sleep(poll_s)
    summary = {**result, "drained": True, "worker_pods": 0, "in_progress": 0, "backlog": backlog}
    if output == "table":
        click.echo(
            f"drained queue {queue!r}: no worker pod, no job running; {backlog} job(s) wait in "
            f"Redis. `kubectl jobyard resume {queue}` starts consuming again."
        )
    else:
        emit(summary, output)
