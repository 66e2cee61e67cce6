"""The Kubernetes permissions each command needs: one table, used by the commands, the
`rbac` command (docs, a Role for clusters without the chart) and the tests that check the
chart's roles against it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
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
    "list deployments.apps at the cluster scope: when a release is not found, the error "
    "also lists the releases of every namespace (not granted by the chart: it shows every "
    "Deployment of the cluster)"
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


class Target(Enum):
    """Which of a release's objects a grant is limited to (its `resourceNames`)."""

    API_SERVICE = "`<fullname>-api`"
    API_PROXY = "`<fullname>-api:<port>`"
    SCALED_OBJECTS = "`<fullname>-worker-<queue>` per queue"
    DEPLOYMENTS = "`<fullname>-api`, `<fullname>-beat`, `<fullname>-worker-<queue>` per queue"
    SECRET = "`<fullname>` (or `secrets.existingSecret`)"  # noqa: S105 (a label)


NAMED: dict[Permission, Target] = {
    GET_SERVICES: Target.API_SERVICE,
    PROXY_GET: Target.API_PROXY,
    PROXY_CREATE: Target.API_PROXY,
    PROXY_DELETE: Target.API_PROXY,
    GET_SCALEDOBJECTS: Target.SCALED_OBJECTS,
    PATCH_SCALEDOBJECTS: Target.SCALED_OBJECTS,
    PATCH_DEPLOYMENTS: Target.DEPLOYMENTS,
    GET_SECRETS: Target.SECRET,
}
"""Grants that name the release's objects: the API server checks the request's object name
against them (the service proxy's name is `<service>:<port>`)."""

_LIST = "RBAC cannot limit a list to names; the plugin selects the release's by label"
UNNAMED: dict[Permission, str] = {
    LIST_DEPLOYMENTS: _LIST,
    LIST_SCALEDOBJECTS: _LIST,
    LIST_HPAS: "RBAC cannot limit a list to names; KEDA names the HPAs it creates",
    LIST_PODS: _LIST,
    GET_POD_LOGS: "pod names are generated (`<deployment>-<hash>-<id>`), so no Role can name them",
}
"""Grants that cannot name objects, and why: they hold for the whole namespace."""

WORST_CASE: dict[Permission, str] = {
    LIST_DEPLOYMENTS: "read every Deployment of the namespace, env values included (not "
    "the contents of Secrets they reference)",
    PATCH_DEPLOYMENTS: "change the release's pod templates: run any image or command with "
    "the Secrets and Redis access of the API, beat and workers",
    LIST_SCALEDOBJECTS: "read every ScaledObject of the namespace",
    GET_SCALEDOBJECTS: "read the release's ScaledObjects",
    PATCH_SCALEDOBJECTS: "stop or change the queues' autoscaling; retarget a trigger (and "
    "the TriggerAuthentication it uses) at another Redis or Deployment",
    LIST_HPAS: "read every HPA of the namespace",
    GET_SERVICES: "read the API Service",
    PROXY_GET: "GET any path of the jobyard API, sent by the Kubernetes API server "
    "(NetworkPolicies written for in-cluster clients do not stop it; the API still wants its "
    "own token when it has tokens)",
    PROXY_CREATE: "POST to the jobyard API: enqueue, retry, cancel (with a token the API "
    "accepts for writes)",
    PROXY_DELETE: "DELETE on the jobyard API: purge dead letters (with a token the API "
    "accepts for writes)",
    LIST_PODS: "read every Pod of the namespace",
    GET_POD_LOGS: "read the logs of every pod of the namespace",
    GET_SECRETS: "read every key of the release's Secret: API and admin tokens, and also "
    "the Redis and SMTP passwords and the webhook secret (RBAC cannot limit a get to one key)",
}
"""What a holder of each grant can do at worst (docs/operations.md)."""


@dataclass(frozen=True)
class ReleaseNames:
    """The names of one release's objects, as the chart renders them."""

    fullname: str
    queues: tuple[str, ...]
    api_port: int | str = 8000
    secret: str | None = None
    """The Secret holding `api-tokens`/`admin-tokens`; None: no grant on Secrets."""

    def of(self, target: Target) -> list[str]:
        """The `resourceNames` of a grant that names `target`."""
        api = f"{self.fullname}-api"
        workers = [f"{self.fullname}-worker-{q}" for q in self.queues]
        if target is Target.API_SERVICE:
            return [api]
        if target is Target.API_PROXY:
            return [f"{api}:{self.api_port}"]
        if target is Target.SCALED_OBJECTS:
            return workers
        if target is Target.DEPLOYMENTS:
            return [api, f"{self.fullname}-beat", *workers]
        if self.secret is None:
            raise ValueError("no Secret is named, so no grant on Secrets")
        return [self.secret]


def role_rules(permissions: Iterable[Permission], names: ReleaseNames) -> list[dict[str, Any]]:
    """PolicyRules: one per (group, resource, resourceNames), verbs sorted, named grants
    limited to the release's objects."""
    verbs: dict[tuple[str, str, tuple[str, ...]], set[str]] = {}
    for p in permissions:
        target = NAMED.get(p)
        named = tuple(names.of(target)) if target is not None else ()
        verbs.setdefault((p.group, p.resource, named), set()).add(p.verb)
    rules: list[dict[str, Any]] = []
    for (group, resource, named), v in sorted(verbs.items()):
        rule: dict[str, Any] = {"apiGroups": [group], "resources": [resource], "verbs": sorted(v)}
        if named:
            rule["resourceNames"] = list(named)
        rules.append(rule)
    return rules


def roles(names: ReleaseNames, namespace: str) -> list[dict[str, Any]]:
    """The read-only and operator Roles of a release (what the chart renders); the operator
    may get the Secret only when `names.secret` is set."""
    operator_grants = operator() + ([GET_SECRETS] if names.secret is not None else [])
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": f"{names.fullname}-kubectl-{role}", "namespace": namespace},
            "rules": role_rules(grants, names),
        }
        for role, grants in (("read-only", read_only()), ("operator", operator_grants))
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


def role_table() -> str:
    """The docs' table: each grant, the roles holding it, the objects it names, the
    commands that need it and what a holder can do at worst."""
    lines = [
        "| read-only | operator | verb | resource | resourceNames | needed by | worst case |",
        "|---|---|---|---|---|---|---|",
    ]
    ro, op = set(read_only()), set(operator())
    for permission in WORST_CASE:
        target = NAMED.get(permission)
        where = target.value if target else f"none (namespace): {UNNAMED[permission]}"
        users = [f"`{c}`" for c, ps in REQUIRED_RBAC.items() if permission in ps]
        if permission in OPTIONAL_RBAC:
            users.append("optional: the API token (`readTokenSecret`)")
        holder = "yes" if permission in op else "with `readTokenSecret`"
        lines.append(
            f"| {'yes' if permission in ro else '-'} | {holder} | {permission.verb} | "
            f"`{permission.qualified_resource}` | {where} | {', '.join(users)} | "
            f"{WORST_CASE[permission]} |"
        )
    return "\n".join(lines)
