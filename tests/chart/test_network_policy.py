"""NetworkPolicies: Redis admits jobyard's pods and the KEDA operator only; workers and
beat admit metric scrapes only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.chart.rendering import RELEASE, Rendered

Render = Callable[[str], Rendered]


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return selector.get("matchLabels", {}).items() <= labels.items()


def _pod_labels(r: Rendered) -> dict[str, dict[str, str]]:
    out = {}
    for obj in r.objects:
        if obj["kind"] in ("Deployment", "StatefulSet"):
            out[obj["metadata"]["name"]] = obj["spec"]["template"]["metadata"]["labels"]
        elif obj["kind"] == "Pod":
            out[obj["metadata"]["name"]] = obj["metadata"]["labels"]
    return out


class TestNetworkPolicy:
    def test_redis_admits_exactly_jobyard_clients_and_the_keda_operator(
        self, rendered: Render
    ) -> None:
        r = rendered("network-policy")
        policy = r.get("NetworkPolicy", f"{RELEASE}-redis")
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        (rule,) = policy["spec"]["ingress"]
        assert rule["ports"] == [{"port": "redis", "protocol": "TCP"}]
        same_namespace, keda = rule["from"]
        admitted = sorted(
            n
            for n, labels in _pod_labels(r).items()
            if _matches(same_namespace["podSelector"], labels)
        )
        assert admitted == sorted(
            [
                f"{RELEASE}-api",
                f"{RELEASE}-beat",
                f"{RELEASE}-flower",
                f"{RELEASE}-worker-default",
                f"{RELEASE}-worker-emails",
                f"{RELEASE}-worker-reports",
            ]
        )
        assert keda == {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}},
            "podSelector": {"matchLabels": {"app": "keda-operator"}},
        }
        assert _matches(
            policy["spec"]["podSelector"],
            r.get("StatefulSet", f"{RELEASE}-redis")["spec"]["template"]["metadata"]["labels"],
        )

    def test_workers_and_beat_admit_only_metric_scrapes(self, rendered: Render) -> None:
        r = rendered("network-policy")
        for component in ("worker", "beat"):
            policy = r.get("NetworkPolicy", f"{RELEASE}-{component}")
            assert policy["spec"]["ingress"] == [
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                            }
                        }
                    ],
                    "ports": [{"port": "metrics", "protocol": "TCP"}],
                }
            ]
            selected = [
                n
                for n, labels in _pod_labels(r).items()
                if _matches(policy["spec"]["podSelector"], labels)
            ]
            assert len(selected) == (3 if component == "worker" else 1)

    def test_api_admits_its_clients_prometheus_and_the_helm_test(self, rendered: Render) -> None:
        r = rendered("network-policy")
        policy = r.get("NetworkPolicy", f"{RELEASE}-api")
        (rule,) = policy["spec"]["ingress"]
        ingress_nginx, monitoring, test = rule["from"]
        assert ingress_nginx["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": "ingress-nginx"
        }
        assert monitoring["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": "monitoring"
        }
        assert _matches(test["podSelector"], r.get("Pod", f"{RELEASE}-test")["metadata"]["labels"])

    def test_off_by_default(self, rendered: Render) -> None:
        assert rendered("defaults").of_kind("NetworkPolicy") == []
