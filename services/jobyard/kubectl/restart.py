"""`restart beat|api|QUEUE`: a rollout restart, as `kubectl rollout restart` does it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from jobyard.kubectl.common import connection_options, open_release, output_option
from jobyard.kubectl.errors import PluginError
from jobyard.kubectl.kube import Kube
from jobyard.kubectl.output import emit
from jobyard.kubectl.rbac import PATCH_DEPLOYMENTS
from jobyard.kubectl.release import Release, name_of

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


def restart_patch(now: datetime) -> dict[str, Any]:
    """The pod-template annotation kubectl sets (RFC 3339, local time with offset)."""
    stamp = now.astimezone().isoformat(timespec="seconds")
    return {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}


def _target(release: Release, what: str) -> tuple[str, dict[str, Any]]:
    if what == "beat":
        if release.beat is None:
            raise PluginError(f"release {release.name!r} has no beat Deployment")
        return "beat", release.beat
    if what == "api":
        if release.api is None:
            raise PluginError(f"release {release.name!r} has no API Deployment")
        return "api", release.api
    return "worker", release.worker(what)


def _check_beat(deployment: dict[str, Any], force: bool) -> str | None:
    """Refuse (unless --force) a beat rollout that could run two beats at once."""
    spec = deployment.get("spec") or {}
    strategy = (spec.get("strategy") or {}).get("type", "RollingUpdate")
    replicas = int(spec.get("replicas", 1))
    problems = []
    if strategy != "Recreate":
        problems.append(
            f"its strategy is {strategy}, not Recreate: the new beat pod would start before "
            "the old one stops"
        )
    if replicas > 1:
        problems.append(f"it runs {replicas} replicas, not 1")
    if not problems:
        return None
    message = f"deploy/{name_of(deployment)}: " + "; ".join(problems)
    if not force:
        raise PluginError(
            f"refusing to restart beat, {message}. Two beats overlap safely only while the "
            "Redis lease holds; fix the Deployment (the chart sets Recreate and 1 replica) or "
            "pass --force"
        )
    return message


def restart_deployment(kube: Kube, name: str, now: datetime) -> dict[str, Any]:
    patch = restart_patch(now)
    kube.raw(
        PATCH_DEPLOYMENTS,
        kube.apps.patch_namespaced_deployment,
        name,
        kube.namespace,
        patch,
        name=name,
        _content_type=STRATEGIC_MERGE_PATCH,
    )
    return patch


@click.command()
@click.argument("what", metavar="beat|api|QUEUE")
@click.option("--force", is_flag=True, help="beat: restart even if not Recreate / 1 replica.")
@connection_options
@output_option
@click.pass_context
def restart(ctx: click.Context, /, what: str, force: bool, output: str, **_: Any) -> None:
    """Rollout-restart beat, the API, or QUEUE's workers (new pods, same spec).

    Beat must be one replica with the Recreate strategy, so the old pod stops before the new
    one starts: anything else is refused unless --force. Workers stop taking jobs on
    SIGTERM; running jobs finish within the queue's shutdown grace or are requeued.
    """
    kube, release = open_release(ctx)
    component, deployment = _target(release, what)
    warning = _check_beat(deployment, force) if component == "beat" else None
    if warning:
        click.echo(f"kubectl jobyard: warning: {warning}", err=True)
    name = name_of(deployment)
    patch = restart_deployment(kube, name, datetime.now())
    stamp = patch["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
    replicas = int((deployment.get("spec") or {}).get("replicas", 1))
    result = {
        "deployment": name,
        "component": component,
        "restarted_at": stamp,
        "replicas": replicas,
    }
    if output != "table":
        emit(result, output)
        return
    text = f"deploy/{name} restarted ({RESTARTED_AT}={stamp})"
    if component == "worker" and replicas == 0:
        text += "; it has 0 replicas now (paused or scaled to zero): nothing to replace"
    text += f"; follow with `kubectl -n {kube.namespace} rollout status deploy/{name}`"
    click.echo(text)
