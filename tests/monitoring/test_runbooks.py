"""docs/runbooks: one page per alert that agrees with the rule, the dashboards and the chart."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from jobyard.core.config import QueueAlerts
from tests.monitoring.alert_rules import RUNBOOKS_DIR, Alert, load_alerts
from tests.monitoring.dashboard_files import load_dashboards, panels
from tests.monitoring.markdown import github_slug, headings

ALERTS = load_alerts()
README = RUNBOOKS_DIR / "README.md"
SECTIONS = ["Meaning", "Impact", "Confirm in Grafana", "Diagnose", "Act", "When it clears"]


def _page(alert: Alert) -> str:
    return (RUNBOOKS_DIR / alert.runbook_page).read_text(encoding="utf-8")


def _prose(text: str) -> str:
    """The page without its fenced code blocks."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _code(text: str) -> str:
    """Only the page's fenced code blocks and inline code."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
    return "\n".join(blocks + re.findall(r"`([^`\n]+)`", _prose(text)))


def test_github_slugs() -> None:
    assert github_slug("JobyardQueueBacklogHigh") == "jobyardqueuebackloghigh"
    assert github_slug("Confirm in Grafana") == "confirm-in-grafana"
    assert github_slug("Before you run a command") == "before-you-run-a-command"
    assert github_slug("`jobyard` & KEDA: pause!") == "jobyard--keda-pause"


def test_readme_indexes_every_alert_with_its_severity_and_delay() -> None:
    rows = re.findall(
        r"^\| (Jobyard\w+) \| (\w+) \| (\w+) \| \[([\w-]+)\]\(([\w.-]+)\) \|$",
        README.read_text(encoding="utf-8"),
        flags=re.M,
    )
    assert [r[0] for r in rows] == [a.name for a in ALERTS]
    for (name, severity, for_, label, link), alert in zip(rows, ALERTS, strict=True):
        assert (severity, for_) == (alert.labels["severity"], alert.for_), name
        assert link == alert.runbook_page and label + ".md" == link, name


def test_every_page_belongs_to_an_alert() -> None:
    pages = {p.name for p in RUNBOOKS_DIR.glob("*.md")} - {"README.md"}
    assert pages == {a.runbook_page for a in ALERTS}


@pytest.mark.parametrize("alert", ALERTS, ids=lambda a: a.name)
def test_page_states_what_the_rule_says(alert: Alert) -> None:
    text = _page(alert)
    assert headings(text)[0] == alert.name
    assert headings(text)[1:] == SECTIONS
    assert f"| Severity | `{alert.labels['severity']}` |" in text
    assert f"| Fires after | `{alert.for_}` |" in text


def _dashboard_titles() -> dict[str, set[str]]:
    return {d["title"]: {p["title"] for p in panels(d)} for d in load_dashboards().values()}


@pytest.mark.parametrize("path", sorted(RUNBOOKS_DIR.glob("*.md")), ids=lambda p: p.name)
def test_named_dashboards_and_panels_exist(path: Path) -> None:
    """`**jobyard / Queue**, panel "Waiting"` names a real dashboard and panel."""
    titles = _dashboard_titles()
    all_panels = set().union(*titles.values())
    prose = _prose(path.read_text(encoding="utf-8"))
    for dashboard in re.findall(r"\*\*(jobyard / [^*]+)\*\*", prose):
        assert dashboard in titles, f"{path.name}: no dashboard titled {dashboard!r}"
    named = 0
    for line in re.split(r"\n(?=\S)|\n- ", prose):
        if not re.search(r"\bpanels?\b", line, flags=re.I):
            continue
        for panel in re.findall(r'"([^"]+)"', line):
            assert panel in all_panels, f"{path.name}: no dashboard panel titled {panel!r}"
            named += 1
    if path.name != "README.md":
        assert named > 0, f"{path.name} names no dashboard panel"


@pytest.mark.parametrize("path", sorted(RUNBOOKS_DIR.glob("*.md")), ids=lambda p: p.name)
def test_config_fields_named_exist(path: Path) -> None:
    for field in re.findall(r"queues\[\]\.alerts\.(\w+)", path.read_text(encoding="utf-8")):
        assert field in QueueAlerts.model_fields, f"{path.name}: no queues[].alerts.{field}"


_DEPLOYMENT = re.compile(r'(?:deploy|statefulset)/"?\$FULLNAME-([\w$-]+)"?')
_SELECTOR = re.compile(r"-l (\S+)")
KEDA_ANNOTATIONS = ("autoscaling.keda.sh/paused", "autoscaling.keda.sh/paused-replicas")


PLUGIN = "kubectl jobyard"
PLUGIN_PREFIX = 'kubectl jobyard -n "$NS" -r "$RELEASE" '


def _blocks(text: str) -> list[str]:
    """The page's fenced code blocks."""
    return re.findall(r"^\s*```[^\n]*\n(.*?)^\s*```", text, flags=re.S | re.M)


def _plugin_args(line: str) -> list[str]:
    """A runbook's plugin command line as the plugin receives it, placeholders filled."""
    words = shlex.split(line.split(" #", 1)[0], posix=True)
    assert words[:2] == ["kubectl", "jobyard"], line
    filled = {"$NS": "jobs", "$RELEASE": "jobyard", "$QUEUE": "default", "<job-id>": "0" * 8}
    return [filled.get(w, w) for w in words[2:]]


def _parse_plugin_command(args: list[str]) -> str:
    """Parse `args` with the plugin's real click group (no cluster): the command's name."""
    import click

    from jobyard.kubectl.cli import cli

    takes_value = {
        opt for p in cli.params if isinstance(p, click.Option) and not p.is_flag for opt in p.opts
    }
    at = 0
    while at < len(args) and args[at].startswith("-"):
        at += 2 if args[at] in takes_value else 1
    if at >= len(args) or args[at] not in cli.commands:
        raise click.UsageError(f"no plugin command in {args}")
    name = args[at]
    with (
        cli.make_context("kubectl jobyard", args[: at + 1]) as ctx,
        cli.commands[name].make_context(name, args[at + 1 :], parent=ctx),
    ):
        return name


@pytest.mark.parametrize("path", sorted(RUNBOOKS_DIR.glob("*.md")), ids=lambda p: p.name)
def test_plugin_commands_parse_and_keep_the_raw_kubectl_beside_them(path: Path) -> None:
    """Every `kubectl jobyard` line in a code block names the namespace and release, is a
    valid plugin command, and its block also shows the raw kubectl equivalent."""
    for block in _blocks(path.read_text(encoding="utf-8")):
        lines = [line.strip() for line in block.splitlines()]
        plugin = [line for line in lines if line.startswith(f"{PLUGIN} ")]
        if not plugin:
            continue
        assert any(line.startswith('kubectl -n "$NS" ') for line in lines), (path.name, block)
        for line in plugin:
            assert line.startswith(PLUGIN_PREFIX), f"{path.name}: {line}"
            args = _plugin_args(line)
            assert _parse_plugin_command(args) in args, line


def test_plugin_parser_rejects_a_bad_command() -> None:
    import click

    with pytest.raises(click.UsageError):
        _parse_plugin_command(["-n", "jobs", "pause", "default", "--replicas", "N"])
    with pytest.raises(click.UsageError):
        _parse_plugin_command(["-n", "jobs", "pasue", "default"])


@pytest.mark.parametrize("path", sorted(RUNBOOKS_DIR.glob("*.md")), ids=lambda p: p.name)
def test_commands_use_the_chart_object_names_and_labels(path: Path) -> None:
    code = _code(path.read_text(encoding="utf-8"))
    for name in _DEPLOYMENT.findall(code):
        assert name in ("api", "beat", "worker-$QUEUE", "redis"), f"{path.name}: $FULLNAME-{name}"
    for kind, name in re.findall(r"(scaledobject|hpa) \"([^\"]+)\"", code):
        expected = {
            "scaledobject": "$FULLNAME-worker-$QUEUE",
            "hpa": "keda-hpa-$FULLNAME-worker-$QUEUE",
        }
        assert name == expected[kind], f"{path.name}: {kind} {name}"
    for selector in _SELECTOR.findall(code):
        labels = dict(part.split("=", 1) for part in selector.split(","))
        assert labels.pop("app.kubernetes.io/instance") == '"$RELEASE"', selector
        component = labels.pop("app.kubernetes.io/component", None)
        assert component in (None, "api", "worker", "beat", "redis"), selector
        assert labels in ({}, {"jobyard.io/queue": '"$QUEUE"'}), selector
    for annotation in re.findall(r"autoscaling\.keda\.sh/[\w-]+", code):
        assert annotation.removesuffix("-") in KEDA_ANNOTATIONS, annotation
    for line in code.splitlines():
        if line in (PLUGIN, "kubectl plugin list") or line.startswith(f"{PLUGIN} "):
            continue  # test_plugin_commands_parse_and_keep_the_raw_kubectl_beside_them
        if line.startswith("kubectl ") and "-n keda" not in line:
            assert line.startswith('kubectl -n "$NS" '), f"{path.name}: {line}"
