"""The PromQL lexer the metric-name checks rely on."""

from __future__ import annotations

import pytest

from tests.monitoring.promql import (
    PromQLLexError,
    metric_names,
    substitute_variables,
    template_variables,
)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('sum by (queue) (rate(a_total{queue=~"x|y", le="+Inf"}[5m]))', {"a_total"}),
        (
            "max by (namespace, queue) (depth) > on (namespace, queue) group_left (task) thr",
            {"depth", "thr"},
        ),
        ("a unless on (ns) b or c and ignoring (x) d", {"a", "b", "c", "d"}),
        ("histogram_quantile(0.95, sum(rate(h_bucket[10m])) without (pod))", {"h_bucket"}),
        ("time() - max(tick offset 5m) > bool 1.5e2", {"tick"}),
        ('label_replace(kube_x{d=~".+-worker-(.+)"}, "queue", "$1", "d", "(.+)")', {"kube_x"}),
        ("0 * count by (ns) (info) + Inf - NaN", {"info"}),
        ("vector(0.05)", set()),
        ("max_over_time(g[30m:1m]) # a comment naming not_a_metric", {"g"}),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


@pytest.mark.parametrize("expr", ['up{job="x}', "rate(a[5m)", '{__name__="up"}'])
def test_unbalanced_or_nameless_selectors_are_rejected(expr: str) -> None:
    with pytest.raises(PromQLLexError):
        metric_names(expr)


def test_grafana_variables_are_found_and_substituted() -> None:
    expr = 'rate(x{namespace=~"$namespace", queue="${queue}"}[$__rate_interval])'
    assert template_variables(expr) == {"namespace", "queue", "__rate_interval"}
    assert substitute_variables(expr) == 'rate(x{namespace=~".*", queue="default"}[5m])'
    with pytest.raises(KeyError, match="cluster"):
        substitute_variables("up{cluster=~'$cluster'}")
