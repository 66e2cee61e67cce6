"""What every command shares: the connection options, finding the release, confirmations."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from jobyard.kubectl.errors import ConfirmationRefusedError
from jobyard.kubectl.kube import Kube, Target, connect
from jobyard.kubectl.output import FORMATS
from jobyard.kubectl.release import Release, find_release

F = TypeVar("F", bound=Callable[..., Any])

CONNECTION_OPTIONS = ("namespace", "context", "kubeconfig", "release")


def connection_options(fn: F) -> F:
    """`-n/--namespace`, `--context`, `--kubeconfig`, `--release`: accepted before the
    command (`kubectl jobyard -n jobs status`) and after it (`... status -n jobs`)."""
    fn = click.option(
        "--release",
        "-r",
        default=None,
        metavar="NAME",
        help="Helm release (default: the only jobyard release in the namespace).",
    )(fn)
    fn = click.option(
        "--kubeconfig",
        default=None,
        metavar="PATH",
        help="kubeconfig file (default: KUBECONFIG, else ~/.kube/config; in a pod without "
        "one, the pod's service account).",
    )(fn)
    fn = click.option(
        "--context", default=None, metavar="NAME", help="kubeconfig context (default: current)."
    )(fn)
    fn = click.option(
        "--namespace",
        "-n",
        default=None,
        metavar="NS",
        help="Namespace of the release (default: the context's namespace).",
    )(fn)
    return fn


def output_option(fn: F) -> F:
    return click.option(
        "--output",
        "-o",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="table for people; json or yaml for scripts.",
    )(fn)


@dataclass(frozen=True)
class Connection:
    target: Target
    release: str | None


def connection(ctx: click.Context) -> Connection:
    """The connection options: the command's own, else the group's."""
    values = {name: ctx.params.get(name) for name in CONNECTION_OPTIONS}
    parent = ctx.parent
    while parent is not None:
        for name in CONNECTION_OPTIONS:
            if values[name] is None:
                values[name] = parent.params.get(name)
        parent = parent.parent
    return Connection(
        Target(
            kubeconfig=values["kubeconfig"],
            context=values["context"],
            namespace=values["namespace"],
        ),
        values["release"],
    )


def open_release(ctx: click.Context) -> tuple[Kube, Release]:
    """Connect and find the release the options name."""
    conn = connection(ctx)
    kube = connect(conn.target)
    return kube, find_release(kube, conn.release)


def can_confirm(yes: bool) -> None:
    """Fail before any change when a confirmation is needed but cannot be asked."""
    if not yes and not sys.stdin.isatty():
        raise ConfirmationRefusedError(
            "refusing to go on without confirmation: stdin is not a terminal; pass --yes"
        )


def confirm(question: str, yes: bool) -> None:
    if not yes:
        click.confirm(question, abort=True)


YES = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
