"""The `kubectl jobyard` command group: options, error handling, the commands."""

from __future__ import annotations

import sys
from typing import Any

import click

from jobyard import __version__
from jobyard.kubectl import rbac
from jobyard.kubectl.common import connection_options
from jobyard.kubectl.dead_letters import dead_letters, jobs
from jobyard.kubectl.errors import PluginError
from jobyard.kubectl.logs import logs
from jobyard.kubectl.output import emit
from jobyard.kubectl.pause import drain, pause, resume
from jobyard.kubectl.restart import restart
from jobyard.kubectl.status import status

PROG = "kubectl jobyard"


class PluginGroup(click.Group):
    """Print plugin errors as `kubectl jobyard: <message>` with their exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PluginError as exc:
            click.echo(f"{PROG}: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(
    cls=PluginGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name=PROG)
@connection_options
def cli(**_: Any) -> None:
    """A jobyard release as queues: status, pause/resume/drain, dead letters, jobs, logs and
    restarts, with your kubeconfig and RBAC (no port-forward).

    The jobyard API is reached through the Kubernetes API server's service proxy. When it
    requires a token, pass --api-token or set JOBYARD_API_TOKEN; without one the plugin
    reads the release's Secret if RBAC allows.
    """


@cli.command("rbac")
@click.option(
    "--output",
    "-o",
    type=click.Choice(["table", "role", "json"]),
    default="table",
    show_default=True,
    help="table: what each command needs (markdown); role: the chart's read-only and "
    "operator Roles of one release (YAML, for clusters without the chart's); json: the "
    "table as data.",
)
@click.option("--namespace", "-n", default="NAMESPACE", help="Namespace of the Roles (role).")
@click.option(
    "--fullname",
    default="jobyard",
    show_default=True,
    help="role: the prefix of the release's object names (<fullname>-api, ...).",
)
@click.option(
    "--queue",
    "queues",
    multiple=True,
    metavar="NAME",
    help="role: a queue of the release (repeat for each); the Roles name its Deployment "
    "and ScaledObject.",
)
@click.option("--api-port", default=8000, show_default=True, help="role: the API Service's port.")
@click.option(
    "--token-secret",
    default=None,
    metavar="NAME",
    help="role: let the operator get this Secret (the API's tokens) by name.",
)
def rbac_command(
    output: str,
    namespace: str,
    fullname: str,
    queues: tuple[str, ...],
    api_port: int,
    token_secret: str | None,
) -> None:
    """The Kubernetes permissions each command needs (no cluster access)."""
    if output == "table":
        click.echo(rbac.markdown_table())
    elif output == "json":
        emit({c: [str(p) for p in ps] for c, ps in rbac.REQUIRED_RBAC.items()}, "json")
    else:
        if not queues:
            raise click.UsageError("-o role needs the release's queues: --queue NAME ...")
        names = rbac.ReleaseNames(fullname, queues, api_port, token_secret)
        import yaml

        click.echo(yaml.safe_dump_all(rbac.roles(names, namespace), sort_keys=False), nl=False)


for command in (status, pause, resume, drain, dead_letters, jobs, logs, restart):
    cli.add_command(command)
