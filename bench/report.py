# ruff: noqa: RUF001  (the report prints the multiplication sign and en dash on purpose)
"""The markdown and JSON reports of a run, and the check of the issue's figures."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bench.systems import BASELINE, MULTI, SOLO

FIGURES_DOC = "docs/performance.md"


def _med(block: dict[str, Any] | None, metric: str) -> float | None:
    if not block or metric not in block:
        return None
    return float(block[metric]["median"])


def _cell(block: dict[str, Any] | None, metric: str, fmt: str = "{:.0f}") -> str:
    if not block or metric not in block:
        errors = [r["error"] for r in (block or {}).get("runs", []) if "error" in r]
        return "failed" if errors else "–"
    s = block[metric]
    if s["n"] == 1:
        return fmt.format(s["median"])
    return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}–{fmt.format(s['max'])})"


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "–"
    return f"{value / base:.2f}×"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table (header, separator, rows) followed by a blank line."""
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]


def figures(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's figures: what was measured, against which target, met or not."""
    out: list[dict[str, Any]] = []

    def add(name: str, target: str, measured: str, met: bool | None) -> None:
        out.append({"figure": name, "target": target, "measured": measured, "met": met})

    drain = report.get("drain", {})
    for mode in (SOLO, MULTI):
        jy = _med(drain.get("jobyard", {}).get(mode), "jobs_per_s")
        base = _med(drain.get(BASELINE, {}).get(mode), "jobs_per_s")
        if jy and base:
            add(
                f"drain jobs/s vs bare Celery ({mode})",
                "≥ 1.0× (aim 1.5×)",
                f"{jy / base:.2f}× ({jy:.0f} vs {base:.0f})",
                jy / base >= 1.0,
            )
    for mode in (SOLO, MULTI):
        cmds = _med(drain.get("jobyard", {}).get(mode), "redis_commands_per_job")
        if cmds is not None:
            add(f"Redis commands per job ({mode})", "≤ 14", f"{cmds:.1f}", cmds <= 14.0001)
    for mode in (SOLO, MULTI):
        jy = _med(drain.get("jobyard", {}).get(mode), "peak_rss_mib")
        base = _med(drain.get(BASELINE, {}).get(mode), "peak_rss_mib")
        if jy and base:
            add(
                f"peak worker RSS vs bare Celery ({mode})",
                "≤ 1.2×",
                f"{jy / base:.2f}× ({jy:.0f} vs {base:.0f} MiB)",
                jy / base <= 1.2,
            )
    latency = report.get("latency", {})
    jy = _med(latency.get("jobyard", {}).get("fixed"), "p99_ms")
    base = _med(latency.get(BASELINE, {}).get("fixed"), "p99_ms")
    if jy is not None and base is not None:
        rate = report["plan"]["latency_rate_per_s"]
        add(
            f"enqueue→start p99 at {rate:g}/s vs bare Celery",
            "≤ bare Celery",
            f"{jy:.1f} ms vs {base:.1f} ms",
            jy <= base,
        )
    http = report.get("http", {})
    single = next((v for k, v in http.items() if k.endswith("/v1/jobs")), None)
    batch = next((v for k, v in http.items() if "batch" in k), None)
    flower = http.get("flower async-apply")
    s, f = _med(single, "jobs_per_s"), _med(flower, "jobs_per_s")
    if s and f:
        add(
            "HTTP enqueue vs Flower async-apply",
            "> 1.0×",
            f"{s / f:.2f}× ({s:.0f} vs {f:.0f}/s)",
            s > f,
        )
    b = _med(batch, "jobs_per_s")
    if b:
        add("HTTP batch enqueue", "≥ 10,000 jobs/s", f"{b:,.0f} jobs/s", b >= 10_000)
    scale = report.get("scale", {})
    if "backlog" in scale:
        n = scale["queued_jobs"]
        for key, label in (("queues_ms", "GET /v1/queues"), ("metrics_ms", "/metrics scrape")):
            ms = scale["backlog"][key]
            add(f"{label} with {n:,} queued", "< 50 ms", f"{ms:.1f} ms", ms < 50)
    return out


def render_markdown(report: dict[str, Any]) -> str:
    plan = report["plan"]
    m = report["machine"]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(report["started_at"]))
    lines = [
        f"# jobyard benchmark: {plan['profile']} run, {when}",
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; {m['os']}",
        f"- Python {m['python']}, redis-server {m['redis_server']}; "
        + ", ".join(f"{k} {v}" for k, v in m["libraries"].items()),
        f"- load average (1, 5, 15 min) at start {m['load_at_start']}, at end "
        f"{m.get('load_at_end')}; run took {report.get('duration_s', 0) / 60:.1f} min; "
        f"commit {m['git_commit']}",
        f"- {plan['reps']} repetition(s), systems interleaved; cells are median (min–max); "
        f"ratios are medians against bare Celery ({BASELINE})",
        "",
        "Systems:",
        "",
        *[f"- **{name}**: {desc}" for name, desc in report.get("systems", {}).items()],
        "",
    ]
    figs = figures(report)
    if figs:
        met = {True: "yes", False: "**no**", None: "–"}
        lines += [
            "## Figures",
            "",
            *_table(
                ["figure", "target", "measured", "met"],
                [[f["figure"], f["target"], f["measured"], met[f["met"]]] for f in figs],
            ),
        ]
    if "drain" in report:
        lines += _drain_section(report)
    if "latency" in report:
        lines += _latency_section(report)
    if "http" in report:
        lines += _http_section(report)
    if "scale" in report:
        lines += _scale_section(report)
    return "\n".join(lines).rstrip() + "\n"


def _drain_section(report: dict[str, Any]) -> list[str]:
    plan = report["plan"]
    drain = report["drain"]
    lines = [
        f"## Drain: {plan['drain_jobs']:,} no-op jobs queued, then run",
        "",
        f"Worker CPU and memory are the whole process tree's (RSS summed, which counts "
        f"pages forked processes share once per process; PSS divides them); Redis commands "
        f"are `INFO commandstats` deltas per job during the drain. jobyard and bare Celery "
        f"drain all N jobs (cut at "
        f"{plan['drain_max_s']:g} s); the other systems are cut after "
        f"{plan.get('peer_drain_max_s', plan['drain_max_s']):g} s and measured over the jobs "
        "they finished by then (marked *).",
        "",
    ]
    header = ["system", "jobs/s", "× Celery", "CPU µs/job", "× Celery", "Redis cmds/job"]
    header += ["peak RSS MiB", "× Celery", "peak PSS MiB", "× Celery"]
    for mode in plan["drain_modes"]:
        base = drain.get(BASELINE, {}).get(mode)
        rows = []
        for name, modes in drain.items():
            b = modes.get(mode)
            if b is None:
                continue
            capped = any(r.get("capped") for r in b.get("runs", []))
            row = [f"{name}{' *' if capped else ''}"]
            for metric in ("jobs_per_s", "cpu_us_per_job"):
                row += [_cell(b, metric), _ratio(_med(b, metric), _med(base, metric))]
            row.append(_cell(b, "redis_commands_per_job", "{:.1f}"))
            for metric in ("peak_rss_mib", "peak_pss_mib"):
                row += [_cell(b, metric), _ratio(_med(b, metric), _med(base, metric))]
            rows.append(row)
        lines += [f"### {mode}", "", *_table(header, rows)]
    return lines


def _latency_section(report: dict[str, Any]) -> list[str]:
    lat = report["latency"]
    plan = report["plan"]
    lines = [
        "## Latency: enqueue → start, worker on both cores",
        "",
        f"A producer enqueues at a fixed rate with each system's own client; phase `fixed` "
        f"is {plan['latency_rate_per_s']:g}/s for {plan['latency_duration_s']:g} s, phase "
        f"`near_saturation` is {plan['saturation_fraction']:.0%} of the system's own drain "
        f"rate (multi) for {plan['saturation_duration_s']:g} s."
        + (
            f" Left out: {', '.join(plan['latency_skip'])} (it cannot keep up with "
            f"{plan['latency_rate_per_s']:g}/s here; see its drain rate)."
            if plan.get("latency_skip")
            else ""
        ),
        "",
    ]
    for phase in ("fixed", "near_saturation"):
        base = lat.get(BASELINE, {}).get(phase)
        rows = []
        for name, block in lat.items():
            b = block.get(phase)
            rate = _med(b, "rate_per_s")
            achieved = _med(b, "achieved_rate_per_s")
            rate_cell = "–" if rate is None else f"{rate:.0f} ({achieved or 0:.0f})"
            quantiles = [_cell(b, q, "{:.1f}") for q in ("p50_ms", "p95_ms", "p99_ms", "max_ms")]
            ratio = _ratio(_med(b, "p99_ms"), _med(base, "p99_ms"))
            rows.append([name, rate_cell, *quantiles, ratio])
        lines += [
            f"### {phase}",
            "",
            *_table(
                [
                    "system",
                    "rate/s (achieved)",
                    "p50 ms",
                    "p95 ms",
                    "p99 ms",
                    "max ms",
                    "p99 × Celery",
                ],
                rows,
            ),
        ]
    return lines


def _http_section(report: dict[str, Any]) -> list[str]:
    http = report["http"]
    plan = report["plan"]
    flower = http.get("flower async-apply")
    lines = [
        f"## HTTP enqueue: {plan['http_clients']} concurrent clients, "
        f"{plan['http_duration_s']:g} s per measurement",
        "",
    ]
    rows = [
        [
            name,
            _cell(b, "jobs_per_s"),
            _ratio(_med(b, "jobs_per_s"), _med(flower, "jobs_per_s")),
            _cell(b, "requests_per_s"),
            _cell(b, "p50_ms", "{:.1f}"),
            _cell(b, "p99_ms", "{:.1f}"),
            _cell(b, "server_cpu_us_per_job"),
        ]
        for name, b in http.items()
    ]
    header = ["endpoint", "jobs/s", "× Flower", "requests/s", "p50 ms", "p99 ms"]
    return lines + _table([*header, "server CPU µs/job"], rows)


def _scale_section(report: dict[str, Any]) -> list[str]:
    s = report["scale"]
    if "error" in s:
        return ["## Scale", "", f"failed: {s['error']}", ""]
    return [
        f"## Scale: {s['queued_jobs']:,} queued jobs over 10 queues",
        "",
        *_table(
            [
                "Redis bytes per queued job (record + message + indexes)",
                "fill time s",
                "GET /v1/queues ms, empty → backlog",
                "/metrics ms, empty → backlog",
            ],
            [
                [
                    f"{s['bytes_per_job']:.0f}",
                    f"{s['fill_s']:.1f}",
                    f"{s['empty']['queues_ms']:.1f} → {s['backlog']['queues_ms']:.1f}",
                    f"{s['empty']['metrics_ms']:.1f} → {s['backlog']['metrics_ms']:.1f}",
                ]
            ],
        ),
        "Latencies are medians of sequential requests.",
        "",
    ]


def write_reports(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write `<stamp>-<profile>.md/.json` and copies named `latest-<profile>`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report["figures"] = figures(report)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(report["started_at"]))
    base = f"{stamp}-{report['plan']['profile']}"
    md, js = out_dir / f"{base}.md", out_dir / f"{base}.json"
    md.write_text(render_markdown(report))
    js.write_text(json.dumps(report, indent=2, default=str) + "\n")
    latest = f"latest-{report['plan']['profile']}"
    (out_dir / f"{latest}.md").write_text(md.read_text())
    (out_dir / f"{latest}.json").write_text(js.read_text())
    return md, js
