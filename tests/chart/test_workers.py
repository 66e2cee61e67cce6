"""Worker Deployments, KEDA ScaledObjects, grace periods and scale-down safety."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from jobyard.core import keys
from jobyard.core.config import KOMBU_PRIORITY_STEPS, parse_config
from tests.chart.conftest import MATRIX
from tests.chart.rendering import (
    RELEASE,
    Rendered,
    deep_merge,
    env_of,
    load_values,
    pod_spec,
)

Render = Callable[[str], Rendered]
RenderWith = Callable[[dict[str, Any]], Rendered]
KEDA = {"keda": {"crdInstalled": True}}


def _config(r: Rendered) -> Any:
    return parse_config(r.config_text())


class TestWorkerDeployments:
    @pytest.mark.parametrize("values_name", MATRIX)
    def test_one_deployment_per_configured_queue(self, rendered: Render, values_name: str) -> None:
        r = rendered(values_name)
        assert sorted(r.workers()) == sorted(_config(r).queue_names)

    def test_worker_runs_exactly_its_queue(self, rendered: Render) -> None:
        r = rendered("priorities")
        for queue, deployment in r.workers().items():
            (worker,) = pod_spec(deployment)["containers"]
            assert worker["args"] == ["worker", "--queue", queue]
            assert "command" not in worker, "the image ENTRYPOINT (jobyard) must be PID 1"
            assert worker["livenessProbe"]["exec"]["command"] == [
                "jobyard",
                "worker",
                "--queue",
                queue,
                "--check",
            ]
            assert worker["ports"] == [
                {"name": "metrics", "containerPort": 9808, "protocol": "TCP"}
            ]
            assert env_of(worker)["JOBYARD_WORKER_METRICS_PORT"]["value"] == "9808"
            assert env_of(worker)["JOBYARD_HEARTBEAT_DIR"]["value"] == "/tmp/jobyard"

    @pytest.mark.parametrize("values_name", ["defaults", "priorities", "keda-off-cpu-hpa", "rich"])
    def test_autoscaled_deployments_never_render_replicas(
        self, rendered: Render, values_name: str
    ) -> None:
        for deployment in rendered(values_name).workers().values():
            assert "replicas" not in deployment["spec"]

    def test_fixed_replicas_without_an_autoscaler(self, rendered: Render) -> None:
        r = rendered("keda-off")
        assert {q: d["spec"]["replicas"] for q, d in r.workers().items()} == {
            "default": 3,
            "emails": 2,
        }
        assert r.of_kind("ScaledObject") == [] and r.of_kind("HorizontalPodAutoscaler") == []

    def test_per_queue_overrides_reach_only_that_queue(self, rendered: Render) -> None:
        workers = rendered("rich").workers()
        spec = pod_spec(workers["default"])
        (c,) = spec["containers"]
        assert c["image"] == "registry.example.com/jobyard:1.2.3-gpu"
        assert c["resources"] == {
            "requests": {"cpu": "1", "memory": "1Gi"},
            "limits": {"memory": "2Gi"},
        }
        assert spec["nodeSelector"] == {"node-pool": "workers"}
        assert spec["tolerations"][0]["key"] == "dedicated"
        assert spec["priorityClassName"] == "batch"
        assert env_of(c)["MYAPP_MODE"]["value"] == "worker"
        assert (
            workers["default"]["spec"]["template"]["metadata"]["annotations"]["example.com/team"]
            == "jobs"
        )
        other = pod_spec(workers["reports"])
        assert other["containers"][0]["image"] == "registry.example.com/jobyard:1.2.3"
        assert "nodeSelector" not in other and "priorityClassName" not in other
        assert "MYAPP_MODE" not in env_of(other["containers"][0])

    def test_default_topology_spread_uses_the_queue_selector(self, rendered: Render) -> None:
        deployment = rendered("defaults").workers()["emails"]
        spread = pod_spec(deployment)["topologySpreadConstraints"]
        assert [s["topologyKey"] for s in spread] == [
            "topology.kubernetes.io/zone",
            "kubernetes.io/hostname",
        ]
        for s in spread:
            assert s["whenUnsatisfiable"] == "ScheduleAnyway"
            assert (
                s["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
            )

    def test_one_pdb_per_queue_allowing_one_eviction(self, rendered: Render) -> None:
        r = rendered("defaults")
        pdbs = {
            p["metadata"]["labels"].get("jobyard.io/queue"): p
            for p in r.of_kind("PodDisruptionBudget")
            if p["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
        }
        assert sorted(pdbs) == ["default", "emails", "reports"]
        for queue, pdb in pdbs.items():
            assert pdb["spec"]["maxUnavailable"] == 1
            assert (
                pdb["spec"]["selector"]["matchLabels"]
                == r.workers()[queue]["spec"]["selector"]["matchLabels"]
            )


class TestGracePeriods:
    @pytest.mark.parametrize("values_name", MATRIX)
    def test_grace_above_soft_limit_plus_soft_shutdown(
        self, rendered: Render, values_name: str
    ) -> None:
        r = rendered(values_name)
        config = _config(r)
        for queue, deployment in r.workers().items():
            q = config.queue(queue)
            grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
            assert grace > q.soft_time_limit_s + q.shutdown_grace_s

    def test_default_grace_is_soft_limit_plus_shutdown_plus_margin(self, rendered: Render) -> None:
        workers = rendered("defaults").workers()
        # default 60 + 30 + 30, emails 30 + 30 + 30, reports 600 + 120 + 30
        assert {q: pod_spec(d)["terminationGracePeriodSeconds"] for q, d in workers.items()} == {
            "default": 120,
            "emails": 90,
            "reports": 750,
        }

    def test_fractional_limits_round_up(self, render_with: RenderWith) -> None:
        r = render_with(
            deep_merge(
                KEDA,
                {
                    "queues": [
                        {
                            "name": "q",
                            "soft_time_limit_s": 10.2,
                            "time_limit_s": 12,
                            "shutdown_grace_s": 0.5,
                        },
                    ]
                },
            )
        )
        assert pod_spec(r.workers()["q"])["terminationGracePeriodSeconds"] == 11 + 30

    def test_explicit_grace_is_kept(self, rendered: Render) -> None:
        assert (
            pod_spec(rendered("rich").workers()["default"])["terminationGracePeriodSeconds"] == 200
        )


class TestKedaScaledObjects:
    @pytest.mark.parametrize(
        "values_name", ["defaults", "priorities", "external-redis-tls", "rich"]
    )
    def test_one_scaled_object_per_queue_targeting_its_deployment(
        self, rendered: Render, values_name: str
    ) -> None:
        r = rendered(values_name)
        scaled = r.scaled_objects()
        assert sorted(scaled) == sorted(r.workers())
        for queue, so in scaled.items():
            assert so["spec"]["scaleTargetRef"] == {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": r.workers()[queue]["metadata"]["name"],
                "envSourceContainerName": "worker",
            }

    @pytest.mark.parametrize("values_name", ["defaults", "priorities", "rich"])
    def test_a_trigger_for_every_priority_list_with_kombus_names(
        self, rendered: Render, values_name: str
    ) -> None:
        r = rendered(values_name)
        config = _config(r)
        for queue, so in r.scaled_objects().items():
            triggers = so["spec"]["triggers"]
            expected = keys.queue_lists(queue, config.broker.priority_steps)
            assert [t["metadata"]["listName"] for t in triggers] == expected
            assert [t["name"] for t in triggers] == [f"q{s}" for s in config.broker.priority_steps]
            assert {t["type"] for t in triggers} == {"redis"}

    def test_list_names_hold_the_real_control_characters(self, rendered: Render) -> None:
        so = rendered("priorities").scaled_objects()["bulk"]
        names = [t["metadata"]["listName"] for t in so["spec"]["triggers"]]
        assert names == ["bulk", "bulk\x06\x162", "bulk\x06\x165", "bulk\x06\x169"]
        assert all("\\x" not in n for n in names)

    def test_rendered_text_escapes_the_separator(self, rendered: Render) -> None:
        text = rendered("defaults").files[f"{RELEASE}/templates/worker/worker-scaledobject.yaml"]
        assert 'listName: "emails\\x06\\x163"' in text

    def test_default_priority_steps_are_kombus(self, rendered: Render) -> None:
        so = rendered("defaults").scaled_objects()["default"]
        assert [t["name"] for t in so["spec"]["triggers"]] == [
            f"q{s}" for s in KOMBU_PRIORITY_STEPS
        ]

    @pytest.mark.parametrize("values_name", ["defaults", "priorities", "rich"])
    def test_triggers_are_summed_by_a_scaling_modifier(
        self, rendered: Render, values_name: str
    ) -> None:
        r = rendered(values_name)
        config = _config(r)
        for queue, so in r.scaled_objects().items():
            q = config.queue(queue)
            modifiers = so["spec"]["advanced"]["scalingModifiers"]
            names = [t["name"] for t in so["spec"]["triggers"]]
            assert modifiers["formula"] == " + ".join(names)
            assert modifiers["target"] == str(q.backlog_per_replica)
            assert modifiers["metricType"] == "AverageValue"
            for t in so["spec"]["triggers"]:
                assert t["metricType"] == "AverageValue"
                assert t["metadata"]["listLength"] == str(q.backlog_per_replica)

    def test_exact_scaled_object_for_a_queue_with_priorities(self, rendered: Render) -> None:
        so = rendered("priorities").scaled_objects()["default"]
        trigger_meta = {
            "address": f"{RELEASE}-redis.jobs.svc:6379",
            "listLength": "25",
            "activationListLength": "3",
            "databaseIndex": "0",
        }
        assert so["spec"] == {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": f"{RELEASE}-worker-default",
                "envSourceContainerName": "worker",
            },
            "pollingInterval": 15,
            "cooldownPeriod": 120 + 45 + 30 + 60,
            "minReplicaCount": 0,
            "maxReplicaCount": 10,
            "fallback": {"failureThreshold": 3, "replicas": 1},
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleDown": {
                            "stabilizationWindowSeconds": 600,
                            "policies": [{"type": "Pods", "value": 2, "periodSeconds": 195}],
                        }
                    }
                },
                "scalingModifiers": {
                    "formula": "q0 + q2 + q5 + q9",
                    "target": "25",
                    "activationTarget": "3",
                    "metricType": "AverageValue",
                },
            },
            "triggers": [
                {
                    "type": "redis",
                    "name": f"q{step}",
                    "metricType": "AverageValue",
                    "metadata": {"listName": keys.queue_list("default", step), **trigger_meta},
                    "authenticationRef": {"name": f"{RELEASE}-redis-auth"},
                }
                for step in (0, 2, 5, 9)
            ],
        }

    @pytest.mark.parametrize(
        "values_name", ["defaults", "priorities", "external-redis-tls", "rich"]
    )
    def test_cooldown_above_grace_and_scale_down_at_most_n_pods_per_grace(
        self, rendered: Render, values_name: str
    ) -> None:
        r = rendered(values_name)
        values = load_values(values_name)
        for queue, so in r.scaled_objects().items():
            grace = pod_spec(r.workers()[queue])["terminationGracePeriodSeconds"]
            spec = so["spec"]
            assert spec["cooldownPeriod"] > grace
            (policy,) = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"][
                "policies"
            ]
            assert policy["type"] == "Pods"
            explicit = next(
                (
                    q.get("autoscaling", {}).get("scaleDown", {}).get("periodSeconds")
                    for q in values.get("queues", [])
                    if q["name"] == queue
                ),
                None,
            )
            assert policy["periodSeconds"] == (explicit or min(grace, 1800))

    def test_min_max_and_scale_to_zero(self, rendered: Render) -> None:
        scaled = rendered("priorities").scaled_objects()
        assert {
            q: (s["spec"]["minReplicaCount"], s["spec"]["maxReplicaCount"])
            for q, s in scaled.items()
        } == {
            "critical": (2, 20),
            "default": (0, 10),
            "bulk": (0, 4),
        }

    def test_fallback_defaults_to_min_replicas_but_at_least_one(self, rendered: Render) -> None:
        scaled = rendered("priorities").scaled_objects()
        assert {q: s["spec"]["fallback"] for q, s in scaled.items()} == {
            "critical": {"failureThreshold": 3, "replicas": 2},
            "default": {"failureThreshold": 3, "replicas": 1},
            "bulk": {"failureThreshold": 3, "replicas": 1},
        }

    def test_explicit_autoscaling_values(self, rendered: Render) -> None:
        scaled = rendered("rich").scaled_objects()
        spec = scaled["default"]["spec"]
        assert spec["pollingInterval"] == 10
        assert spec["cooldownPeriod"] == 900
        assert spec["fallback"] == {"failureThreshold": 5, "replicas": 4}
        assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"] == {
            "stabilizationWindowSeconds": 120,
            "policies": [{"type": "Pods", "value": 2, "periodSeconds": 240}],
        }
        assert "annotations" not in scaled["default"]["metadata"]

    def test_pause_annotation(self, rendered: Render) -> None:
        so = rendered("rich").scaled_objects()["reports"]
        assert so["metadata"]["annotations"] == {"autoscaling.keda.sh/paused": "true"}

    def test_long_grace_caps_the_scale_down_period_at_the_hpa_maximum(
        self, rendered: Render
    ) -> None:
        so = rendered("rich").scaled_objects()["reports"]
        (policy,) = so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"][
            "scaleDown"
        ]["policies"]
        assert policy["periodSeconds"] == 1800
        assert so["spec"]["cooldownPeriod"] == 3000 + 600 + 30 + 60


class TestKedaRedisConnection:
    def test_password_through_trigger_authentication_from_the_secret(
        self, rendered: Render
    ) -> None:
        r = rendered("defaults")
        auth = r.get("TriggerAuthentication", f"{RELEASE}-redis-auth")
        assert auth["spec"] == {
            "secretTargetRef": [
                {"parameter": "username", "name": RELEASE, "key": "redis-username-keda"},
                {"parameter": "password", "name": RELEASE, "key": "redis-password-keda"},
            ],
        }
        assert r.secret_data()["redis-username-keda"] == "jobyard-keda"
        assert len(r.secret_data()["redis-password-keda"]) == 32

    def test_tls_database_index_user_and_ca_for_an_external_redis(self, rendered: Render) -> None:
        r = rendered("external-redis-tls")
        for so in r.scaled_objects().values():
            for t in so["spec"]["triggers"]:
                meta = t["metadata"]
                assert meta["address"] == "redis.prod.internal:6380"
                assert meta["databaseIndex"] == "3"
                assert "enableTLS" not in meta, (
                    "TLS comes with the CA from the TriggerAuthentication"
                )
                assert "unsafeSsl" not in meta
        auth = r.get("TriggerAuthentication", f"{RELEASE}-redis-auth")
        assert auth["spec"]["secretTargetRef"] == [
            {"parameter": "username", "name": "jobyard-prod", "key": "redis-username-keda"},
            {"parameter": "password", "name": "jobyard-prod", "key": "redis-password-keda"},
            {"parameter": "ca", "name": "redis-ca", "key": "ca.pem"},
        ]
        assert auth["spec"]["env"] == [
            {"parameter": "tls", "name": "KEDA_REDIS_TLS", "containerName": "worker"}
        ]
        for deployment in r.workers().values():
            assert (
                env_of(pod_spec(deployment)["containers"][0])["KEDA_REDIS_TLS"]["value"] == "enable"
            )

    def test_tls_with_the_system_trust_store_uses_enable_tls(self, render_with: RenderWith) -> None:
        values = deep_merge(
            load_values("external-redis-tls"), {"redis": {"tls": {"caSecretName": ""}}}
        )
        r = render_with(values)
        for so in r.scaled_objects().values():
            for t in so["spec"]["triggers"]:
                assert t["metadata"]["enableTLS"] == "true"
                assert "unsafeSsl" not in t["metadata"]
        assert "env" not in r.get("TriggerAuthentication", f"{RELEASE}-redis-auth")["spec"]

    def test_unverified_tls_sets_unsafe_ssl(self, render_with: RenderWith) -> None:
        values = deep_merge(
            load_values("external-redis-tls"),
            {"redis": {"tls": {"caSecretName": "", "verifyCertificate": False}}},
        )
        so = render_with(values).scaled_objects()["default"]
        assert so["spec"]["triggers"][0]["metadata"]["unsafeSsl"] == "true"

    def test_no_password_no_trigger_authentication(self, render_with: RenderWith) -> None:
        r = render_with(deep_merge(KEDA, {"redis": {"auth": False}}))
        assert r.of_kind("TriggerAuthentication") == []
        for so in r.scaled_objects().values():
            assert all("authenticationRef" not in t for t in so["spec"]["triggers"])


class TestWithoutKeda:
    def test_cpu_hpa_per_queue_between_min_and_max(self, rendered: Render) -> None:
        r = rendered("keda-off-cpu-hpa")
        hpas = {
            h["metadata"]["labels"]["jobyard.io/queue"]: h
            for h in r.of_kind("HorizontalPodAutoscaler")
            if h["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
        }
        assert sorted(hpas) == ["default", "emails", "reports"]
        assert {
            q: (h["spec"]["minReplicas"], h["spec"]["maxReplicas"]) for q, h in hpas.items()
        } == {
            "default": (1, 10),
            "emails": (1, 5),
            "reports": (1, 3),
        }
        for queue, hpa in hpas.items():
            assert hpa["spec"]["scaleTargetRef"]["name"] == f"{RELEASE}-worker-{queue}"
            (metric,) = hpa["spec"]["metrics"]
            assert metric["resource"] == {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 70},
            }
            grace = pod_spec(r.workers()[queue])["terminationGracePeriodSeconds"]
            assert hpa["spec"]["behavior"]["scaleDown"]["policies"] == [
                {"type": "Pods", "value": 1, "periodSeconds": min(grace, 1800)},
            ]
        assert r.of_kind("ScaledObject") == [] and r.of_kind("TriggerAuthentication") == []

    def test_keda_without_its_api_fails_with_a_clear_message(self, chart_dir: Any) -> None:
        from tests.chart.rendering import render_error

        message = render_error(chart_dir, {})
        assert (
            "keda.enabled is true but the cluster does not report KEDA's API (keda.sh/v1alpha1)"
            in message
        )
        assert "keda.crdInstalled=true" in message and "keda.enabled=false" in message


def test_the_default_margin_is_the_one_these_tests_assume() -> None:
    """The exact grace numbers above use the chart's default margin of 30 s."""
    import yaml

    from tests.chart.rendering import CHART_DIR

    chart_values = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
    assert chart_values["workers"]["terminationGraceMarginSeconds"] == 30
