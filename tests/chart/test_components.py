"""API, beat, Flower, the bundled Redis, settings and secrets, the helm test hook and NOTES."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import redis

from jobyard.core.settings import known_env_names
from tests.chart.conftest import MATRIX
from tests.chart.rendering import RELEASE, Rendered, containers, env_of, load_values, pod_spec

Render = Callable[[str], Rendered]
RenderWith = Callable[[dict[str, Any]], Rendered]
KEDA = {"keda": {"crdInstalled": True}}


def _secret_ref(entry: dict[str, Any]) -> tuple[str, str, bool]:
    ref = entry["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"], ref.get("optional", False)


class TestApi:
    def test_deployment_service_probes(self, rendered: Render) -> None:
        r = rendered("defaults")
        deployment = r.get("Deployment", f"{RELEASE}-api")
        assert deployment["spec"]["replicas"] == 2
        (api,) = pod_spec(deployment)["containers"]
        assert api["args"] == ["api"] and "command" not in api
        assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert api["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        env = env_of(api)
        assert env["JOBYARD_API_HOST"]["value"] == "0.0.0.0"
        assert env["JOBYARD_API_PORT"]["value"] == "8000"
        service = r.get("Service", f"{RELEASE}-api")
        assert service["spec"]["ports"] == [
            {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
        ]
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]

    def test_pdb_keeps_one_api_pod(self, rendered: Render) -> None:
        pdb = rendered("defaults").get("PodDisruptionBudget", f"{RELEASE}-api")
        assert pdb["spec"]["minAvailable"] == 1

    def test_hpa_replaces_replicas(self, rendered: Render) -> None:
        r = rendered("keda-off-cpu-hpa")
        assert "replicas" not in r.get("Deployment", f"{RELEASE}-api")["spec"]
        hpa = r.get("HorizontalPodAutoscaler", f"{RELEASE}-api")
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 8)

    def test_ingress(self, rendered: Render) -> None:
        r = rendered("rich")
        ingress = r.get("Ingress", f"{RELEASE}-api")
        assert ingress["spec"]["ingressClassName"] == "nginx"
        assert ingress["spec"]["tls"] == [{"secretName": "jobs-tls", "hosts": ["jobs.example.com"]}]
        (rule,) = ingress["spec"]["rules"]
        assert rule["host"] == "jobs.example.com"
        assert rule["http"]["paths"][0]["backend"] == {
            "service": {"name": f"{RELEASE}-api", "port": {"name": "http"}}
        }
        assert not rendered("defaults").has("Ingress", f"{RELEASE}-api")


class TestBeat:
    @pytest.mark.parametrize("values_name", MATRIX)
    def test_one_replica_recreate_never_scaled(self, rendered: Render, values_name: str) -> None:
        r = rendered(values_name)
        beat = r.get("Deployment", f"{RELEASE}-beat")
        assert beat["spec"]["replicas"] == 1
        assert beat["spec"]["strategy"] == {"type": "Recreate"}
        targets = [
            o["spec"]["scaleTargetRef"]["name"]
            for o in r.of_kind("ScaledObject") + r.of_kind("HorizontalPodAutoscaler")
        ]
        assert f"{RELEASE}-beat" not in targets

    def test_own_probe_on_its_metrics_port(self, rendered: Render) -> None:
        (beat,) = pod_spec(rendered("defaults").get("Deployment", f"{RELEASE}-beat"))["containers"]
        assert beat["args"] == ["beat"]
        assert beat["ports"] == [{"name": "metrics", "containerPort": 9809, "protocol": "TCP"}]
        assert beat["livenessProbe"]["tcpSocket"] == {"port": "metrics"}
        assert env_of(beat)["JOBYARD_BEAT_METRICS_PORT"]["value"] == "9809"


class TestFlower:
    def test_off_by_default(self, rendered: Render) -> None:
        assert not any(
            o["metadata"]["name"].endswith("-flower") for o in rendered("defaults").objects
        )

    def test_basic_auth_from_the_secret_and_the_broker_url(self, rendered: Render) -> None:
        r = rendered("flower")
        deployment = r.get("Deployment", f"{RELEASE}-flower")
        (flower,) = pod_spec(deployment)["containers"]
        env = env_of(flower)
        assert _secret_ref(env["FLOWER_BASIC_AUTH"]) == (RELEASE, "flower-basic-auth", False)
        assert _secret_ref(env["CELERY_BROKER_URL"]) == (RELEASE, "redis-url-flower", False)
        assert r.secret_data()["flower-basic-auth"] == "ops:s3cret-flower-pass"
        assert "FLOWER_UNAUTHENTICATED_API" not in env
        assert r.get("Service", f"{RELEASE}-flower")["spec"]["ports"][0]["port"] == 5555

    def test_flower_knows_the_queues_and_their_priority_lists(self, rendered: Render) -> None:
        text = rendered("flower").get("ConfigMap", f"{RELEASE}-flower")["data"]["celeryconfig.py"]
        scope: dict[str, Any] = {}
        exec(compile(text, "celeryconfig.py", "exec"), scope)
        assert [q.name for q in scope["task_queues"]] == ["default", "emails", "reports"]
        assert scope["broker_transport_options"] == {
            "priority_steps": [0, 3, 6, 9],
            "sep": "\x06\x16",
            "queue_order_strategy": "priority",
        }
        assert scope["accept_content"] == ["json"]


class TestBundledRedis:
    def test_persistence_aof_and_noeviction(self, rendered: Render) -> None:
        r = rendered("defaults")
        conf = r.get("ConfigMap", f"{RELEASE}-redis")["data"]["redis.conf"].splitlines()
        assert "appendonly yes" in conf and "appendfsync everysec" in conf
        assert "maxmemory-policy noeviction" in conf
        sts = r.get("StatefulSet", f"{RELEASE}-redis")
        assert (
            sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
            == "1Gi"
        )
        (c,) = pod_spec(sts)["containers"]
        assert c["args"] == ["/etc/redis/redis.conf"]
        # Users come from the ACL file; only the probes' password is in the environment.
        assert [e["name"] for e in c["env"]] == ["REDISCLI_AUTH"]
        assert _secret_ref(env_of(c)["REDISCLI_AUTH"]) == (RELEASE, "redis-password-probe", False)

    def test_off_with_an_external_redis(self, rendered: Render) -> None:
        r = rendered("external-redis-tls")
        assert not r.has("StatefulSet", f"{RELEASE}-redis") and not r.has(
            "Service", f"{RELEASE}-redis"
        )

    def test_generated_password_is_the_one_in_the_url(self, rendered: Render) -> None:
        data = rendered("defaults").secret_data()
        for component in ("api", "worker", "beat"):
            url = urlsplit(data[f"redis-url-{component}"])
            assert len(data[f"redis-password-{component}"]) == 32
            assert url.username == f"jobyard-{component}"
            assert unquote(url.password or "") == data[f"redis-password-{component}"]
            assert url.hostname == f"{RELEASE}-redis.jobs.svc" and url.port == 6379
        passwords = [data[f"redis-password-{c}"] for c in ("api", "worker", "beat", "keda")]
        assert len(set(passwords)) == 4, "every component has its own password"


class TestSecretsAndSettings:
    @pytest.mark.parametrize("values_name", MATRIX)
    def test_only_settings_jobyard_knows(self, rendered: Render, values_name: str) -> None:
        known = known_env_names()
        for obj in rendered(values_name).objects:
            if obj["kind"] not in ("Deployment", "StatefulSet", "Pod"):
                continue
            for c in containers(obj):
                unknown = [n for n in env_of(c) if n.startswith("JOBYARD_") and n not in known]
                assert unknown == [], f"{obj['metadata']['name']}/{c['name']}"

    def test_every_jobyard_container_gets_the_redis_url_from_the_secret(
        self, rendered: Render
    ) -> None:
        r = rendered("external-redis-tls")
        for name in ("api", "beat", "worker-default", "worker-emails", "worker-reports"):
            (c,) = pod_spec(r.get("Deployment", f"{RELEASE}-{name}"))["containers"]
            assert _secret_ref(env_of(c)["JOBYARD_REDIS_URL"]) == (
                "jobyard-prod",
                f"redis-url-{name.split('-')[0]}",
                False,
            )
        assert not r.of_kind("Secret")

    def test_the_url_parses_back_to_the_values(self, rendered: Render) -> None:
        data = rendered("rich").secret_data()
        kwargs = redis.connection.parse_url(data["redis-url-api"])
        assert kwargs["username"] == "app+api"
        assert kwargs["password"] == "p@ss:w/rd #1 +x"
        assert kwargs["host"] == f"{RELEASE}-redis.jobs.svc" and kwargs["port"] == 6379
        assert kwargs["db"] == 0

    def test_tls_url_verifies_with_the_mounted_ca(self, render_with: RenderWith) -> None:
        values = {**load_values("external-redis-tls"), "secrets": {"existingSecret": ""}}
        values["redis"] = {
            **values["redis"],
            "users": {
                c: {"username": f"u-{c}", "password": "pw"}
                for c in ("api", "worker", "beat", "keda", "flower")
            },
        }
        r = render_with(values)
        url = r.secret_data()["redis-url-worker"]
        assert url == (
            "rediss://u-worker:pw@redis.prod.internal:6380/3"
            "?ssl_cert_reqs=required&ssl_ca_certs=/etc/jobyard/redis-ca/ca.pem"
        )
        kwargs = redis.connection.parse_url(url)
        assert kwargs["ssl_cert_reqs"] == "required" and kwargs["db"] == 3
        (api,) = pod_spec(r.get("Deployment", f"{RELEASE}-api"))["containers"]
        assert {"name": "redis-ca", "mountPath": "/etc/jobyard/redis-ca", "readOnly": True} in api[
            "volumeMounts"
        ]

    def test_tokens_smtp_webhook_otel_and_modules(self, rendered: Render) -> None:
        r = rendered("rich")
        data = r.secret_data()
        assert data["api-tokens"] == "read-token-0123456789,read-token-abcdefghij"
        assert data["admin-tokens"] == "admin-token-0123456789"
        assert data["client-token"] == "admin-token-0123456789"
        assert data["webhook-secret"] == "hmac-key-0123456789"
        assert data["smtp-password"] == "smtp-password"
        (api,) = pod_spec(r.get("Deployment", f"{RELEASE}-api"))["containers"]
        assert _secret_ref(env_of(api)["JOBYARD_API_TOKENS"]) == (RELEASE, "api-tokens", False)
        (c,) = pod_spec(r.get("Deployment", f"{RELEASE}-worker-default"))["containers"]
        env = env_of(c)
        assert _secret_ref(env["JOBYARD_SMTP_PASSWORD"]) == (RELEASE, "smtp-password", False)
        assert env["JOBYARD_JOB_MODULES"]["value"] == "myapp.jobs,myapp.more_jobs"
        assert env["JOBYARD_SMTP_HOST"]["value"] == "smtp.example.com"
        assert env["JOBYARD_SMTP_STARTTLS"]["value"] == "true"
        assert env["JOBYARD_LOG_LEVEL"]["value"] == "DEBUG"
        assert (
            env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"]
            == "http://otel-collector.observability:4317"
        )
        assert env["OTEL_SERVICE_NAME"]["value"] == "jobyard-worker"
        assert env["TZ"]["value"] == "UTC"
        assert env["JOBYARD_EXPORT_DIR"]["value"] == "/var/lib/jobyard/exports"
        volume = next(
            v
            for v in pod_spec(r.get("Deployment", f"{RELEASE}-worker-default"))["volumes"]
            if v["name"] == "exports"
        )
        assert volume == {
            "name": "exports",
            "persistentVolumeClaim": {"claimName": "jobyard-exports"},
        }

    def test_the_settings_load(self, rendered: Render) -> None:
        """The plain env of a worker and of the API is a valid jobyard configuration."""
        from jobyard.core.settings import load_settings

        secret = rendered("rich").secret_data()

        def environ(name: str) -> dict[str, str]:
            (c,) = pod_spec(rendered("rich").get("Deployment", f"{RELEASE}-{name}"))["containers"]
            return {
                n: entry.get("value") or secret[entry["valueFrom"]["secretKeyRef"]["key"]]
                for n, entry in env_of(c).items()
                if n.startswith("JOBYARD_")
            }

        worker = load_settings(environ("worker-default"))
        assert worker.smtp_port == 587 and worker.heartbeat_max_age_s == 30
        assert worker.api_tokens == [] and worker.admin_tokens == []
        api = load_settings(environ("api"))
        assert [t.get_secret_value() for t in api.api_tokens] == [
            "read-token-0123456789",
            "read-token-abcdefghij",
        ]


class TestHelmTestAndNotes:
    def test_helm_test_checks_readyz_then_runs_noop(self, rendered: Render) -> None:
        r = rendered("flower")
        pod = r.get("Pod", f"{RELEASE}-test")
        assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
        (ready,) = pod["spec"]["initContainers"]
        assert f"http://{RELEASE}-api:8000/readyz" in ready["args"][0]
        (noop,) = pod["spec"]["containers"]
        assert noop["args"] == ["enqueue", "jobyard.noop", "--wait", "--timeout", "120"]
        env = env_of(noop)
        assert env["JOBYARD_API_URL"]["value"] == f"http://{RELEASE}-api:8000"
        assert _secret_ref(env["JOBYARD_API_TOKEN"]) == (RELEASE, "client-token", True)
        assert "JOBYARD_REDIS_URL" not in env
        compile(ready["args"][0], "readyz", "exec")

    def test_notes_tell_how_to_reach_the_api_and_enqueue(self, rendered: Render) -> None:
        notes = rendered("flower").notes
        assert f"kubectl --namespace jobs port-forward svc/{RELEASE}-api 8000:8000" in notes
        assert "jobyard enqueue jobyard.noop --wait" in notes
        assert "jsonpath='{.data.client-token}'" in notes
        assert f"helm test {RELEASE} --namespace jobs" in notes
        assert "default: 1..10 pods, 20 waiting jobs per pod, grace 120 s" in notes
        assert "WARNING" not in notes and "generated an admin" not in notes
        assert "the chart generated an admin\ntoken" in rendered("defaults").notes
