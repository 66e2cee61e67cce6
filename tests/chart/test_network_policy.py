"""NetworkPolicies: Redis admits jobyard's pods and the KEDA operator only; workers and
beat admit metric scrapes only; workers reach only DNS, Redis, SMTP, OpenTelemetry, the
allow-listed CIDRs and (when enabled) public addresses on 80/443."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.chart.rendering import RELEASE, Rendered, load_values, render_error

Render = Callable[[str], Rendered]
RenderWith = Callable[[dict[str, Any]], Rendered]


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


def _egress_admits(policy: dict[str, Any], address: str, port: int) -> bool:
    """Whether an egress policy's ipBlock rules let a pod connect to address:port (TCP)."""
    ip = ipaddress.ip_address(address)
    for rule in policy["spec"]["egress"]:
        ports = rule.get("ports")
        if ports and not any(
            p.get("protocol", "TCP") == "TCP" and p.get("port", port) == port for p in ports
        ):
            continue
        for peer in rule.get("to", []):
            block = peer.get("ipBlock")
            if block is None:
                continue
            network = ipaddress.ip_network(block["cidr"], strict=False)
            if ip.version != network.version or ip not in network:
                continue
            if not any(ip in ipaddress.ip_network(e) for e in block.get("except", [])):
                return True
    return False


class TestWorkerEgress:
    def _policy(self, r: Rendered) -> dict[str, Any]:
        return r.get("NetworkPolicy", f"{RELEASE}-worker-egress")

    def test_selects_exactly_the_worker_pods(self, rendered: Render) -> None:
        r = rendered("worker-egress")
        policy = self._policy(r)
        assert policy["spec"]["policyTypes"] == ["Egress"]
        selected = sorted(
            n
            for n, labels in _pod_labels(r).items()
            if _matches(policy["spec"]["podSelector"], labels)
        )
        assert selected == [f"{RELEASE}-worker-{q}" for q in ("default", "emails", "reports")]

    def test_dns_and_the_bundled_redis(self, rendered: Render) -> None:
        r = rendered("worker-egress")
        dns, redis, *_ = self._policy(r)["spec"]["egress"]
        assert dns == {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                    },
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }
            ],
            "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
        }
        assert redis["ports"] == [{"port": 6379, "protocol": "TCP"}]
        (peer,) = redis["to"]
        assert _matches(
            peer["podSelector"],
            r.get("StatefulSet", f"{RELEASE}-redis")["spec"]["template"]["metadata"]["labels"],
        )

    def test_smtp_otel_and_the_allow_listed_cidrs(self, rendered: Render) -> None:
        policy = self._policy(rendered("worker-egress"))
        rules = policy["spec"]["egress"]
        assert {
            "to": [{"ipBlock": {"cidr": "10.0.7.25/32"}}],
            "ports": [{"port": 587, "protocol": "TCP"}],
        } in rules
        assert {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "observability"}
                    }
                }
            ],
            "ports": [{"port": 4317, "protocol": "TCP"}],
        } in rules
        # CIDR entries of config.egress.allow (a bare address is one host); host names
        # cannot be expressed and are left out
        assert {
            "to": [
                {"ipBlock": {"cidr": "10.20.0.0/16"}},
                {"ipBlock": {"cidr": "192.0.2.7/32"}},
                {"ipBlock": {"cidr": "fd00:1::/64"}},
            ],
            "ports": [{"protocol": "TCP"}],
        } in rules
        assert "crm.internal.example" not in str(policy)
        assert _egress_admits(policy, "10.20.3.4", 8080)
        assert _egress_admits(policy, "192.0.2.7", 9000)
        assert not _egress_admits(policy, "192.0.2.8", 9000)
        assert _egress_admits(policy, "10.0.7.25", 587)
        assert not _egress_admits(policy, "10.0.7.25", 25)

    @pytest.mark.parametrize(
        "address",
        [
            "169.254.169.254",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "127.0.0.1",
            "fd00::1",
            "fe80::1",
        ],
    )
    def test_public_internet_on_80_443_without_private_ranges(
        self, rendered: Render, address: str
    ) -> None:
        policy = self._policy(rendered("worker-egress"))
        for port in (80, 443):
            assert not _egress_admits(policy, address, port)
            assert _egress_admits(policy, "93.184.216.34", port)
            assert _egress_admits(policy, "2606:2800:220:1::1", port)
        assert not _egress_admits(policy, "93.184.216.34", 8080)
        assert not _egress_admits(policy, "93.184.216.34", 25)

    def test_public_internet_only_when_enabled(self, render_with: RenderWith) -> None:
        values = load_values("worker-egress")
        values["networkPolicy"]["workerEgress"]["publicInternet"] = {"enabled": False}
        policy = self._policy(render_with(values))
        assert not _egress_admits(policy, "93.184.216.34", 443)
        assert "0.0.0.0/0" not in str(policy)
        assert _egress_admits(policy, "10.20.3.4", 443)

    def test_external_redis_needs_its_peers(self, chart_dir: Path, render_with: RenderWith) -> None:
        values = load_values("external-redis-tls")
        values["networkPolicy"] = {"workerEgress": {"enabled": True}}
        error = render_error(chart_dir, values)
        assert "networkPolicy.workerEgress.redis.to is required" in error
        values["networkPolicy"]["workerEgress"]["redis"] = {
            "to": [{"ipBlock": {"cidr": "10.0.5.10/32"}}]
        }
        policy = self._policy(render_with(values))
        assert policy["spec"]["egress"][1] == {
            "to": [{"ipBlock": {"cidr": "10.0.5.10/32"}}],
            "ports": [{"port": 6380, "protocol": "TCP"}],
        }
        assert _egress_admits(policy, "10.0.5.10", 6380)
        assert not _egress_admits(policy, "10.0.5.10", 443)

    def test_off_by_default(self, rendered: Render) -> None:
        for name in ("defaults", "network-policy"):
            assert not rendered(name).has("NetworkPolicy", f"{RELEASE}-worker-egress")
