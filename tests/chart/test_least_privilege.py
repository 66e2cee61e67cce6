"""Least privilege: each component references only the Secret keys it uses (user job code
runs in worker pods and never holds an API token); the per-endpoint webhook secrets reach
worker pods only, as a read-only file; the API does not mount the export directory."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.chart.rendering import RELEASE, Obj, Rendered, containers, env_of, pod_spec

Render = Callable[[str], Rendered]
RenderWith = Callable[[dict[str, Any]], Rendered]
WORKERS = ("worker-default", "worker-emails", "worker-reports")
SECRETS_FILE = "/var/run/secrets/jobyard/webhook-secrets.json"


def secret_keys(obj: Obj, secret: str) -> dict[str, bool]:
    """Every key of Secret `secret` a workload's containers can read (env, envFrom,
    volumes), mapped to whether it is optional. A whole-Secret reference reads as "*"."""
    keys: dict[str, bool] = {}
    for c in containers(obj):
        for entry in c.get("env", []):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref and ref["name"] == secret:
                keys[ref["key"]] = ref.get("optional", False)
        for source in c.get("envFrom", []):
            if source.get("secretRef", {}).get("name") == secret:
                keys["*"] = source["secretRef"].get("optional", False)
    for volume in pod_spec(obj).get("volumes", []):
        ref = volume.get("secret")
        if ref and ref["secretName"] == secret:
            for item in ref.get("items") or [{"key": "*"}]:
                keys[item["key"]] = ref.get("optional", False)
        for source in volume.get("projected", {}).get("sources", []):
            if source.get("secret", {}).get("name") == secret:
                for item in source["secret"].get("items") or [{"key": "*"}]:
                    keys[item["key"]] = source["secret"].get("optional", False)
    return keys


def job_secret_keys(obj: Obj, secret: str) -> dict[str, bool]:
    """secret_keys without the Redis credentials (each component has its own; their
    keys are the Redis ACL part's)."""
    return {k: v for k, v in secret_keys(obj, secret).items() if not k.startswith("redis-")}


def workload(r: Rendered, name: str) -> Obj:
    kind = "Pod" if name == "test" else "Deployment"
    return r.get(kind, f"{RELEASE}-{name}")


class TestEachComponentGetsOnlyItsSecrets:
    def test_chart_secret(self, rendered: Render) -> None:
        r = rendered("worker-egress")
        assert job_secret_keys(workload(r, "api"), RELEASE) == {"admin-tokens": False}
        for name in WORKERS:
            assert job_secret_keys(workload(r, name), RELEASE) == {
                "webhook-secret": False,
                "webhook-secrets.json": False,
                "smtp-password": False,
            }, name
        assert job_secret_keys(workload(r, "beat"), RELEASE) == {}
        assert secret_keys(workload(r, "test"), RELEASE) == {"client-token": True}
        for name, component in (
            ("api", "api"),
            ("beat", "beat"),
            *((w, "worker") for w in WORKERS),
        ):
            redis_keys = {
                k for k in secret_keys(workload(r, name), RELEASE) if k.startswith("redis-")
            }
            assert redis_keys == {f"redis-url-{component}"}, name

    def test_read_and_admin_tokens_only_in_the_api(self, rendered: Render) -> None:
        r = rendered("rich")
        assert job_secret_keys(workload(r, "api"), RELEASE) == {
            "api-tokens": False,
            "admin-tokens": False,
        }
        for name in ("beat", "worker-default", "worker-reports"):
            keys = job_secret_keys(workload(r, name), RELEASE)
            assert not {"api-tokens", "admin-tokens", "client-token"} & set(keys), name

    def test_existing_secret(self, rendered: Render) -> None:
        r = rendered("external-redis-tls")
        # the tokens must be there (a pod whose key is missing does not start)
        assert job_secret_keys(workload(r, "api"), "jobyard-prod") == {
            "api-tokens": False,
            "admin-tokens": False,
        }
        for name in WORKERS:
            assert job_secret_keys(workload(r, name), "jobyard-prod") == {
                "webhook-secret": True,
                "webhook-secrets.json": True,
                "smtp-password": True,
            }, name
        assert job_secret_keys(workload(r, "beat"), "jobyard-prod") == {}
        assert secret_keys(workload(r, "test"), "jobyard-prod") == {"client-token": True}

    def test_job_settings_only_on_workers(self, rendered: Render) -> None:
        r = rendered("worker-egress")
        worker_only = {
            "JOBYARD_SMTP_HOST",
            "JOBYARD_SMTP_PORT",
            "JOBYARD_SMTP_FROM",
            "JOBYARD_SMTP_PASSWORD",
            "JOBYARD_WEBHOOK_SECRET",
            "JOBYARD_WEBHOOK_SECRETS_FILE",
            "JOBYARD_WEBHOOK_TIMEOUT_S",
            "JOBYARD_EXPORT_DIR",
        }
        (worker,) = pod_spec(workload(r, "worker-default"))["containers"]
        assert worker_only <= set(env_of(worker))
        for name in ("api", "beat", "test"):
            for c in containers(workload(r, name)):
                assert not worker_only & set(env_of(c)), (name, c["name"])


class TestWebhookSecretsFile:
    def test_stored_as_json_and_mounted_read_only_into_workers_only(self, rendered: Render) -> None:
        r = rendered("worker-egress")
        assert json.loads(r.secret_data()["webhook-secrets.json"]) == {
            "billing": ["billing-secret-current-0123", "billing-secret-previous-012"],
            "crm": ["crm-secret-current-012345"],
        }
        for name in WORKERS:
            spec = pod_spec(workload(r, name))
            (c,) = spec["containers"]
            assert env_of(c)["JOBYARD_WEBHOOK_SECRETS_FILE"]["value"] == SECRETS_FILE
            mount = next(m for m in c["volumeMounts"] if m["name"] == "webhook-secrets")
            assert mount == {
                "name": "webhook-secrets",
                "mountPath": "/var/run/secrets/jobyard",
                "readOnly": True,
            }
            volume = next(v for v in spec["volumes"] if v["name"] == "webhook-secrets")
            assert volume["secret"] == {
                "secretName": RELEASE,
                "defaultMode": 0o440,
                "items": [{"key": "webhook-secrets.json", "path": "webhook-secrets.json"}],
            }
        for name in ("api", "beat"):
            assert "webhook-secrets" not in {
                v["name"] for v in pod_spec(workload(r, name))["volumes"]
            }

    def test_none_without_endpoint_secrets(self, rendered: Render) -> None:
        r = rendered("defaults")
        assert "webhook-secrets.json" not in r.secret_data()
        (c,) = pod_spec(workload(r, "worker-default"))["containers"]
        assert "JOBYARD_WEBHOOK_SECRETS_FILE" not in env_of(c)

    def test_endpoints_and_allow_list_reach_the_config(self, rendered: Render) -> None:
        import yaml

        config = yaml.safe_load(rendered("worker-egress").config_text())
        assert config["webhooks"] == {
            "endpoints": [
                {"name": "billing", "hosts": ["billing.example.com"]},
                {"name": "crm", "hosts": ["crm.internal.example"]},
            ]
        }
        assert config["egress"] == {
            "allow": ["10.20.0.0/16", "192.0.2.7", "fd00:1::/64", "crm.internal.example"]
        }
        defaults = yaml.safe_load(rendered("defaults").config_text())
        assert "webhooks" not in defaults and "egress" not in defaults

    @pytest.mark.parametrize(
        "secrets",
        [{"a": []}, {"a": ["k" * 16, "k" * 17, "k" * 18]}, {"a": ["short"]}, {"a": "k" * 16}],
        ids=["no-key", "three-keys", "short-key", "not-a-list"],
    )
    def test_schema_types_the_map(self, chart_dir: Any, secrets: dict[str, Any]) -> None:
        from tests.chart.rendering import render_error

        error = render_error(
            chart_dir,
            {"keda": {"crdInstalled": True}, "settings": {"webhookEndpointSecrets": secrets}},
        )
        assert "/settings/webhookEndpointSecrets/a" in error


class TestExports:
    @pytest.mark.parametrize("values_name", ["defaults", "rich"])
    def test_the_api_does_not_mount_the_export_directory(
        self, rendered: Render, values_name: str
    ) -> None:
        r = rendered(values_name)
        for name in ("api", "beat"):
            spec = pod_spec(workload(r, name))
            assert "exports" not in {v["name"] for v in spec["volumes"]}, name
            for c in spec["containers"]:
                paths = {m["mountPath"] for m in c.get("volumeMounts", [])}
                assert "/var/lib/jobyard/exports" not in paths, name
                assert "JOBYARD_EXPORT_DIR" not in env_of(c), name
        # report.export runs on workers: they keep it, read-write
        (worker,) = pod_spec(workload(r, "worker-default"))["containers"]
        mount = next(m for m in worker["volumeMounts"] if m["name"] == "exports")
        assert mount == {"name": "exports", "mountPath": "/var/lib/jobyard/exports"}
