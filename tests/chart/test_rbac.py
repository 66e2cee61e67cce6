"""The kubectl plugin's roles grant only this release's objects: Roles in the release's
namespace, every rule that can name objects naming the release's, Secrets only `get` by
name on the release's own, no wildcard, nothing cluster-wide (`scope: cluster` refused)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

from jobyard.kubectl import rbac
from tests.chart.conftest import MATRIX
from tests.chart.rendering import (
    CHART_DIR,
    NAMESPACE,
    RELEASE,
    Rendered,
    deep_merge,
    load_values,
    render,
    render_error,
)

Obj = dict[str, Any]
RenderWith = Callable[[dict[str, Any]], Rendered]

ON: Obj = {"keda": {"crdInstalled": True}, "kubectlPlugin": {"rbac": {"create": True}}}
SUBJECTS: Obj = {
    "keda": {"crdInstalled": True},
    "auth": {"apiTokens": ["read-" + "r" * 32], "adminTokens": ["admin-" + "a" * 32]},
    "kubectlPlugin": {
        "rbac": {
            "create": True,
            "readTokenSecret": True,
            "readOnlySubjects": [{"kind": "Group", "name": "oncall"}],
            "operatorSubjects": [
                {"kind": "ServiceAccount", "name": "bot", "namespace": "ci"},
                {"kind": "User", "name": "alice@example.com"},
            ],
        }
    },
}
VARIANTS: dict[str, Obj] = {
    "on": ON,
    "scope-namespace": deep_merge(ON, {"kubectlPlugin": {"rbac": {"scope": "namespace"}}}),
    "subjects-and-secret": SUBJECTS,
    "existing-secret": deep_merge(SUBJECTS, {"secrets": {"existingSecret": "vault-jobyard"}}),
    "keda-off": deep_merge(SUBJECTS, {"keda": {"enabled": False}}),
    "queues-port": deep_merge(
        SUBJECTS,
        {"queues": [{"name": "q1"}, {"name": "q2"}], "api": {"service": {"port": 9000}}},
    ),
}
# Verbs the API server checks against resourceNames (create too, on a subresource named in
# the URL such as services/NAME:PORT/proxy). list/watch/deletecollection cannot be named.
NAMEABLE = {"get", "patch", "update", "delete"}


def _rbac_objects(r: Rendered) -> list[Obj]:
    return [o for o in r.objects if o["apiVersion"].startswith("rbac.authorization.k8s.io/")]


def _named_objects(r: Rendered) -> set[tuple[str, str]]:
    """(resource, name) of what this release renders, the proxy name included."""
    out = {(f"{o['kind'].lower()}s", o["metadata"]["name"]) for o in r.objects}
    for svc in r.of_kind("Service"):
        for port in svc["spec"]["ports"]:
            out.add(("services/proxy", f"{svc['metadata']['name']}:{port['port']}"))
    return out


def _check(r: Rendered, *, expect_roles: bool) -> None:
    objects = _rbac_objects(r)
    kinds = sorted({o["kind"] for o in objects})
    assert set(kinds) <= {"Role", "RoleBinding"}, kinds
    assert bool(objects) is expect_roles
    rendered = _named_objects(r)
    for obj in objects:
        assert obj["metadata"]["namespace"] == NAMESPACE
        if obj["kind"] == "RoleBinding":
            assert obj["roleRef"]["kind"] == "Role"
            continue
        role = obj["metadata"]["name"]
        for rule in obj["rules"]:
            where = (role, rule)
            for key in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(key, []), where
                assert not any("*" in v for v in rule.get(key, [])), where
            assert rule.get("resourceNames", None) != [], where
            assert len(rule["resources"]) == 1 and len(rule["apiGroups"]) == 1, where
            resource, verbs = rule["resources"][0], set(rule["verbs"])
            nameable = verbs & NAMEABLE or (resource.endswith("/proxy") and "create" in verbs)
            if nameable and resource != "pods/log":
                assert rule.get("resourceNames"), where
            if "resourceNames" in rule:
                assert verbs <= NAMEABLE | {"create"}, where
            if resource == "secrets":
                assert role.endswith("-kubectl-operator"), where
                assert verbs == {"get"}, where
                # The Secret the plugin reads the API's tokens from (tokens.py), no other.
                assert rule["resourceNames"] == [_token_secret(r)], where
            for name in rule.get("resourceNames", []):
                # ScaledObjects are named even with KEDA off: `pause` then gets a 404
                # (not a 403) and says the queue is not autoscaled.
                if resource == "scaledobjects":
                    assert name in {d["metadata"]["name"] for d in r.of_kind("Deployment")}
                else:
                    assert (resource, name) in rendered or resource == "secrets", where


def _token_secret(r: Rendered) -> str:
    """The Secret the API Deployment takes JOBYARD_API_TOKENS / JOBYARD_ADMIN_TOKENS from."""
    api = r.get("Deployment", f"{RELEASE}-api")
    env = api["spec"]["template"]["spec"]["containers"][0]["env"]
    refs = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for e in env
        if e["name"] in ("JOBYARD_API_TOKENS", "JOBYARD_ADMIN_TOKENS")
    }
    assert len(refs) == 1, refs
    return refs.pop()


@pytest.mark.parametrize("values_name", MATRIX)
def test_matrix_roles_are_namespaced_and_named(
    rendered: Callable[[str], Rendered], values_name: str
) -> None:
    r = rendered(values_name)
    on = bool(load_values(values_name).get("kubectlPlugin", {}).get("rbac", {}).get("create"))
    _check(r, expect_roles=on)


@pytest.mark.parametrize("variant", VARIANTS)
def test_roles_name_only_this_releases_objects(render_with: RenderWith, variant: str) -> None:
    r = render_with(VARIANTS[variant])
    _check(r, expect_roles=True)
    operator = r.get("Role", f"{RELEASE}-kubectl-operator")
    secret_rules = [x for x in operator["rules"] if x["resources"] == ["secrets"]]
    read_token = VARIANTS[variant]["kubectlPlugin"]["rbac"].get("readTokenSecret", False)
    assert len(secret_rules) == int(read_token)
    read_only = r.get("Role", f"{RELEASE}-kubectl-read-only")
    assert not [x for x in read_only["rules"] if x["resources"] == ["secrets"]]


def test_the_roles_are_exactly_the_plugins_table(render_with: RenderWith) -> None:
    """Each verb the Roles grant is in REQUIRED_RBAC (or OPTIONAL_RBAC), and names objects
    exactly when rbac.NAMED says it can."""
    r = render_with(SUBJECTS)
    for role in r.of_kind("Role"):
        for rule in role["rules"]:
            for verb in rule["verbs"]:
                p = rbac.Permission(rule["apiGroups"][0], rule["resources"][0], verb)
                assert p in rbac.NAMED or p in rbac.UNNAMED, p
                assert ("resourceNames" in rule) is (p in rbac.NAMED), p


_SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text(encoding="utf-8"))
SCOPES = _SCHEMA["properties"]["kubectlPlugin"]["properties"]["rbac"]["properties"]["scope"]["enum"]


@pytest.mark.parametrize("scope", SCOPES)
def test_every_scope_the_schema_accepts_is_namespaced_or_refused(
    chart_dir: Path, scope: str
) -> None:
    """Whatever `scope` says, no ClusterRole or ClusterRoleBinding and no unnamed grant:
    the render holds to the rules above or fails saying what to do."""
    values = deep_merge(SUBJECTS, {"kubectlPlugin": {"rbac": {"scope": scope}}})
    try:
        r = render(chart_dir, values)
    except helm.HelmError as exc:
        assert "was removed" in str(exc)
        return
    _check(r, expect_roles=True)


def test_scope_cluster_is_refused_with_what_to_do(chart_dir: Path) -> None:
    message = render_error(
        chart_dir, deep_merge(ON, {"kubectlPlugin": {"rbac": {"scope": "cluster"}}})
    )
    assert 'kubectlPlugin.rbac.scope: "cluster" was removed' in message
    assert "every Secret" in message
    assert "readOnlySubjects / operatorSubjects" in message
    # Refused even when no role is rendered: the value no longer means anything.
    off = {**ON, "kubectlPlugin": {"rbac": {"create": False, "scope": "cluster"}}}
    assert "was removed" in render_error(chart_dir, off)
