"""`logs QUEUE [-f]`: the logs of every worker pod of a queue, each line prefixed by pod.

Following runs one thread per pod and lists the queue's pods again every
`--poll-interval` seconds, so pods that autoscaling adds are followed from their start.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import click

from jobyard.cli_input import DURATION_HELP, parse_duration_s
from jobyard.kubectl.common import connection_options, open_release
from jobyard.kubectl.errors import PluginError
from jobyard.kubectl.kube import REQUEST_TIMEOUT_S, Kube, Obj
from jobyard.kubectl.rbac import GET_POD_LOGS, LIST_PODS
from jobyard.kubectl.release import Release, name_of

CONTAINER = "worker"
DEFAULT_TAIL = 10
"""Lines per pod already written when the command starts (kubectl's default with -l)."""


class Printer:
    """Whole lines from many threads, never interleaved."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def line(self, pod: str, text: str) -> None:
        with self._lock:
            click.echo(f"[pod/{pod}] {text}")

    def note(self, text: str) -> None:
        with self._lock:
            click.echo(text, err=True)


def _started(pod: Obj) -> bool:
    """The worker container has run (a waiting container has no log yet)."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            state = status.get("state") or {}
            return "running" in state or "terminated" in state
    return False


def stream_pod(
    kube: Kube,
    pod: str,
    printer: Printer,
    *,
    follow: bool,
    since_s: float | None,
    tail: int | None,
    timestamps: bool,
) -> None:
    """Print a pod's log, line by line as chunks arrive."""
    response = kube.raw(
        GET_POD_LOGS,
        kube.core.read_namespaced_pod_log,
        pod,
        kube.namespace,
        name=pod,
        container=CONTAINER,
        follow=follow or None,
        since_seconds=None if since_s is None else max(1, int(since_s)),
        tail_lines=tail,
        timestamps=timestamps or None,
        timeout_s=None if follow else REQUEST_TIMEOUT_S,
    )
    pending = b""
    try:
        for chunk in response.stream(4096, decode_content=True):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                printer.line(pod, line.decode("utf-8", "replace"))
        if pending:
            printer.line(pod, pending.decode("utf-8", "replace"))
    finally:
        response.release_conn()


def _pods(kube: Kube, release: Release, queue: str) -> list[Obj]:
    listed = kube.read(
        LIST_PODS,
        kube.core.list_namespaced_pod,
        kube.namespace,
        label_selector=release.selector("worker", queue),
    )
    return sorted(listed.get("items") or [], key=name_of)


def _follow(
    kube: Kube,
    release: Release,
    queue: str,
    printer: Printer,
    *,
    since_s: float | None,
    tail: int | None,
    timestamps: bool,
    poll_s: float,
) -> None:
    seen: set[str] = set()
    first = True

    def run(pod: str, pod_tail: int | None) -> None:
        try:
            stream_pod(
                kube,
                pod,
                printer,
                follow=True,
                since_s=since_s,
                tail=pod_tail,
                timestamps=timestamps,
            )
        except PluginError as exc:
            printer.note(f"kubectl jobyard: pod {pod}: {exc}")
            return
        printer.note(f"(pod/{pod}: log stream ended)")

    while True:
        pods = [p for p in _pods(kube, release, queue) if _started(p)]
        if first and not pods:
            printer.note(f"no running worker pod of queue {queue!r} yet; waiting for one")
        for pod in pods:
            name = name_of(pod)
            if name in seen:
                continue
            seen.add(name)
            # Pods found later started after us: their whole log is new.
            threading.Thread(target=run, args=(name, tail if first else None), daemon=True).start()
        first = False
        time.sleep(poll_s)


@click.command()
@click.argument("queue")
@click.option("--follow", "-f", is_flag=True, help="Stream new lines; pick up new pods.")
@click.option(
    "--since",
    "since",
    default=None,
    metavar="DURATION",
    help=f"Only lines newer than this ({DURATION_HELP}).",
)
@click.option(
    "--tail",
    type=click.IntRange(min=-1),
    default=DEFAULT_TAIL,
    show_default=True,
    help="Lines per pod to show first (-1: all).",
)
@click.option("--timestamps", is_flag=True, help="Prefix each line with its time.")
@click.option(
    "--poll-interval",
    "poll_s",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="With -f: seconds between two looks for new pods.",
)
@connection_options
@click.pass_context
def logs(
    ctx: click.Context,
    /,
    queue: str,
    follow: bool,
    since: str | None,
    tail: int,
    timestamps: bool,
    poll_s: float,
    **_: Any,
) -> None:
    """Logs of every worker pod of QUEUE, each line prefixed by [pod/NAME]."""
    try:
        since_s = None if since is None else parse_duration_s(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--since'") from None
    kube, release = open_release(ctx)
    release.worker(queue)
    printer = Printer()
    tail_lines = None if tail < 0 else tail
    if follow:
        try:
            _follow(
                kube,
                release,
                queue,
                printer,
                since_s=since_s,
                tail=tail_lines,
                timestamps=timestamps,
                poll_s=poll_s,
            )
        except KeyboardInterrupt:
            sys.exit(0)
        return
    pods = [p for p in _pods(kube, release, queue) if _started(p)]
    if not pods:
        printer.note(f"no running worker pod of queue {queue!r} (scaled to zero?)")
        return
    for pod in pods:
        stream_pod(
            kube,
            name_of(pod),
            printer,
            follow=False,
            since_s=since_s,
            tail=tail_lines,
            timestamps=timestamps,
        )
