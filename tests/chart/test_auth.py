"""API auth in the chart: an explicit mode, a generated admin token when none is given, tokens
required behind an Ingress, docs behind a setting, and Ingress annotations that bound slow
and large requests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jobyard.core.config import LimitsConfig
from tests.chart.rendering import RELEASE, Rendered, env_of, load_values, pod_spec, render_error

Render = Callable[[str], Rendered]
RenderWith = Callable[[dict[str, Any]], Rendered]
KEDA = {"keda": {"crdInstalled": True}}
INGRESS = {
    "enabled": True,
    "className": "nginx",
    "hosts": [{"host": "jobs.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}],
}
NGINX = "nginx.ingress.kubernetes.io/"


def api_env(r: Rendered) -> dict[str, Any]:
    (c,) = pod_spec(r.get("Deployment", f"{RELEASE}-api"))["containers"]
    return env_of(c)


def secret_ref(entry: dict[str, Any]) -> tuple[str, str, bool]:
    ref = entry["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"], ref.get("optional", False)


class TestAuthMode:
    def test_tokens_by_default_with_a_generated_admin_token(self, rendered: Render) -> None:
        r = rendered("defaults")
        env = api_env(r)
        assert env["JOBYARD_API_AUTH"]["value"] == "tokens"
        assert env["JOBYARD_API_DOCS"]["value"] == "false"
        assert secret_ref(env["JOBYARD_ADMIN_TOKENS"]) == (RELEASE, "admin-tokens", False)
        data = r.secret_data()
        token = data["admin-tokens"]
        assert len(token) == 40 and token.isalnum()
        # the helm test authenticates with it
        assert data["client-token"] == token
        (noop,) = r.get("Pod", f"{RELEASE}-test")["spec"]["containers"]
        assert secret_ref(env_of(noop)["JOBYARD_API_TOKEN"])[:2] == (RELEASE, "client-token")

    def test_given_tokens_are_not_replaced(self, rendered: Render) -> None:
        data = rendered("rich").secret_data()
        assert data["admin-tokens"] == "admin-token-0123456789"
        assert data["client-token"] == "admin-token-0123456789"

    def test_read_tokens_only_generate_nothing(self, render_with: RenderWith) -> None:
        r = render_with({**KEDA, "auth": {"apiTokens": ["read-token-0123456789"]}})
        assert "admin-tokens" not in r.secret_data()
        assert "JOBYARD_ADMIN_TOKENS" not in api_env(r)
        assert r.secret_data()["client-token"] == "read-token-0123456789"

    def test_mode_none_renders_no_token_and_warns(self, render_with: RenderWith) -> None:
        r = render_with({**KEDA, "auth": {"mode": "none"}})
        env = api_env(r)
        assert env["JOBYARD_API_AUTH"]["value"] == "none"
        assert "JOBYARD_API_TOKENS" not in env and "JOBYARD_ADMIN_TOKENS" not in env
        assert not {"api-tokens", "admin-tokens", "client-token"} & set(r.secret_data())
        (noop,) = r.get("Pod", f"{RELEASE}-test")["spec"]["containers"]
        assert "JOBYARD_API_TOKEN" not in env_of(noop)
        assert "WARNING: auth.mode is none" in r.notes

    def test_docs_follow_the_setting(self, render_with: RenderWith) -> None:
        r = render_with({**KEDA, "api": {"docs": {"enabled": True}}})
        assert api_env(r)["JOBYARD_API_DOCS"]["value"] == "true"

    def test_existing_secret_tokens_are_required(self, render_with: RenderWith) -> None:
        values = load_values("external-redis-tls")
        values["api"] = {"ingress": INGRESS}
        r = render_with(values)
        env = api_env(r)
        assert env["JOBYARD_API_AUTH"]["value"] == "tokens"
        assert secret_ref(env["JOBYARD_API_TOKENS"]) == ("jobyard-prod", "api-tokens", False)
        assert secret_ref(env["JOBYARD_ADMIN_TOKENS"]) == ("jobyard-prod", "admin-tokens", False)


REFUSED = [
    pytest.param(
        {"api": {"ingress": INGRESS}},
        "auth.adminTokens (or auth.apiTokens, or secrets.existingSecret with api-tokens and "
        "admin-tokens) is required when api.ingress.enabled",
        id="ingress-without-tokens",
    ),
    pytest.param(
        {"api": {"ingress": INGRESS}, "auth": {"mode": "none"}},
        "auth.mode none is refused with api.ingress.enabled",
        id="ingress-with-mode-none",
    ),
    pytest.param(
        {"auth": {"mode": "none", "adminTokens": ["admin-token-0123456789"]}},
        "auth.mode is none but auth.apiTokens or auth.adminTokens are set",
        id="mode-none-with-tokens",
    ),
    pytest.param(
        {"auth": {"mode": "open"}},
        "at '/auth/mode'",
        id="unknown-mode",
    ),
]


@pytest.mark.parametrize(("values", "message"), REFUSED)
def test_open_or_contradictory_auth_fails_the_render(
    chart_dir: Path, values: dict[str, Any], message: str
) -> None:
    assert message in render_error(chart_dir, {**KEDA, **values})


class TestIngressBoundsSlowAndLargeRequests:
    def test_default_annotations(self, render_with: RenderWith) -> None:
        r = render_with(
            {
                **KEDA,
                "auth": {"adminTokens": ["admin-token-0123456789"]},
                "api": {"ingress": INGRESS},
            }
        )
        annotations = r.get("Ingress", f"{RELEASE}-api")["metadata"]["annotations"]
        assert annotations == {
            NGINX + "proxy-body-size": str(LimitsConfig().max_payload_bytes),
            NGINX + "proxy-request-buffering": "on",
            NGINX + "client-body-buffer-size": "64k",
            NGINX + "proxy-connect-timeout": "5",
            NGINX + "proxy-send-timeout": "30",
            NGINX + "proxy-read-timeout": "30",
        }

    def test_body_size_follows_the_payload_limit(self, rendered: Render) -> None:
        annotations = rendered("rich").get("Ingress", f"{RELEASE}-api")["metadata"]["annotations"]
        assert annotations[NGINX + "proxy-body-size"] == "524288"
        assert load_values("rich")["config"]["limits"]["max_payload_bytes"] == 524288

    def test_annotations_are_overridable_and_removable(self, render_with: RenderWith) -> None:
        r = render_with(
            {
                **KEDA,
                "auth": {"adminTokens": ["admin-token-0123456789"]},
                "api": {
                    "ingress": {
                        **INGRESS,
                        "annotations": {
                            NGINX + "proxy-body-size": "1m",
                            NGINX + "proxy-read-timeout": "120",
                            NGINX + "client-body-buffer-size": None,
                            "example.com/team": "jobs",
                        },
                    }
                },
            }
        )
        annotations = r.get("Ingress", f"{RELEASE}-api")["metadata"]["annotations"]
        assert annotations[NGINX + "proxy-body-size"] == "1m"
        assert annotations[NGINX + "proxy-read-timeout"] == "120"
        assert annotations[NGINX + "proxy-request-buffering"] == "on"
        assert annotations["example.com/team"] == "jobs"
        assert NGINX + "client-body-buffer-size" not in annotations
