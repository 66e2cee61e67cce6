"""The Kubernetes permissions each command needs: one table, used by the commands, the
`rbac` command (docs, a Role for clusters without the chart) and the tests that check the
chart's roles against it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, order=True)
class Permission:
    """One RBAC grant: `verb` on `resource` (with `/subresource`) of API `group`."""

    group: str
    """"" for the core API."""
    resource: str
    verb: str

    @property
    def qualified_resource(self) -> str:
        """`deployments.apps`, `services/proxy`: as `kubectl auth can-i` takes it."""
        base, _, sub = self.resource.partition("/")
        name = f"{base}.{self.group}" if self.group else base
        return f"{name}/{sub}" if sub else name

    def __str__(self) -> str:
        return f"{self.verb} {self.qualified_resource}"


LIST_DEPLOYMENTS = Permission("apps", "deployments", "list")
PATCH_DEPLOYMENTS = Permission("apps", "deployments", "patch")
LIST_SCALEDOBJECTS = Permission("keda.sh", "scaledobjects", "list")
GET_SCALEDOBJECTS = Permission("keda.sh", "scaledobjects", "get")
PATCH_SCALEDOBJECTS = Permission("keda.sh", "scaledobjects", "patch")
LIST_HPAS = Permission("autoscaling", "horizontalpodautoscalers", "list")
GET_SERVICES = Permission("", "services", "get")
PROXY_GET = Permission("", "services/proxy", "get")
PROXY_CREATE = Permission("", "services/proxy", "create")
PROXY_DELETE = Permission("", "services/proxy", "delete")
LIST_PODS = Permission("", "pods", "list")
GET_POD_LOGS = Permission("", "pods/log", "get")
GET_SECRETS = Permission("", "secrets", "get")

_FIND = (LIST_DEPLOYMENTS,)
"""Every command first finds the release: its Deployments, by label."""
_API_READ = (GET_SERVICES, PROXY_GET)
"""The jobyard API through the service proxy (the Service gives the port)."""
_PAUSE = (*_FIND, GET_SCALEDOBJECTS, PATCH_SCALEDOBJECTS, PATCH_DEPLOYMENTS)

REQUIRED_RBAC: dict[str, tuple[Permission, ...]] = {
    "status": (*_FIND, LIST_SCALEDOBJECTS, LIST_HPAS, *_API_READ),
    "pause": _PAUSE,
    "resume": _PAUSE,
    "drain": (*_PAUSE, LIST_PODS, *_API_READ),
    "dead-letters list": (*_FIND, *_API_READ),
    "dead-letters retry": (*_FIND, *_API_READ, PROXY_CREATE),
    "dead-letters purge": (*_FIND, *_API_READ, PROXY_DELETE),
    "jobs": (*_FIND, *_API_READ),
    "logs": (*_FIND, LIST_PODS, GET_POD_LOGS),
    "restart": (*_FIND, PATCH_DEPLOYMENTS),
}
"""Command -> what it needs. `pause`/`resume`/`drain` patch the Deployment only with
`--scale` (a queue without KEDA)."""

OPTIONAL_RBAC: dict[Permission, str] = {
    GET_SECRETS: "read the jobyard API token from the release's Secret when neither "
    "--api-token nor JOBYARD_API_TOKEN is given (only when the API requires tokens)",
}
"""Grants that make a command more convenient; without them it still works."""

CLUSTER_SCOPE_NOTE = (
    "list deployments.apps at the cluster scope (a ClusterRole): when a release is not "
    "found, the error also lists the releases of every namespace"
)

READ_ONLY_COMMANDS = ("status", "dead-letters list", "jobs", "logs")
"""What the chart's read-only role allows."""


def needed(commands: Iterable[str]) -> list[Permission]:
    """The union of the permissions of `commands`, sorted."""
    return sorted({p for c in commands for p in REQUIRED_RBAC[c]})


def read_only() -> list[Permission]:
    """The read-only role's grants."""
    return needed(READ_ONLY_COMMANDS)


def operator() -> list[Permission]:
    """The operator role's grants: every command."""
    return needed(REQUIRED_RBAC)


def role_rules(permissions: Iterable[Permission]) -> list[dict[str, Any]]:
    """PolicyRules: one per (group, resource), verbs sorted."""
    verbs: dict[tuple[str, str], set[str]] = {}
    for p in permissions:
        verbs.setdefault((p.group, p.resource), set()).add(p.verb)
    return [
        {"apiGroups": [group], "resources": [resource], "verbs": sorted(v)}
        for (group, resource), v in sorted(verbs.items())
    ]


def markdown_table() -> str:
    """The table the docs show: command, then what it needs."""
    lines = ["| command | needs |", "|---|---|"]
    for command, permissions in REQUIRED_RBAC.items():
        needs = ", ".join(f"`{p}`" for p in dict.fromkeys(permissions))
        lines.append(f"| `kubectl jobyard {command}` | {needs} |")
    for permission, why in OPTIONAL_RBAC.items():
        lines.append(f"| optional | `{permission}`: {why} |")
    lines.append(f"| optional | {CLUSTER_SCOPE_NOTE} |")
    return "\n".join(lines)
