"""Accounting for every job a scenario enqueued, and the report rows it produces.

A job is accounted for when its record is terminal (succeeded, failed, dead, cancelled)
or in a state the scenario explicitly expects. A job whose record is missing, or still
says queued/scheduled/started/retrying with no message in any queue list, in `unacked` or
among delayed jobs, is LOST; one that still has a message somewhere is PENDING (not lost,
but not drained either). Duplicate executions come from effect files written outside
Redis: an id that appears n times counts n - 1.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.e2e.cluster import Cluster

TERMINAL = frozenset({"succeeded", "failed", "dead", "cancelled"})


def effect_counts(path: Path) -> Counter[str]:
    """How many times each job id appears in an effect file."""
    if not path.exists():
        return Counter()
    return Counter(line for line in path.read_text().splitlines() if line)


def duplicates(counts: Counter[str]) -> int:
    return sum(n - 1 for n in counts.values() if n > 1)


@dataclass
class Account:
    """Where every job of a scenario ended."""

    enqueued: int
    by_state: Counter[str]
    lost: list[str]
    pending: list[str]

    @property
    def succeeded(self) -> int:
        return self.by_state["succeeded"]

    @property
    def failed(self) -> int:
        return self.by_state["failed"]

    @property
    def dead(self) -> int:
        return self.by_state["dead"]


def account(cluster: Cluster, job_ids: list[str], expected: Iterable[str] = ()) -> Account:
    """Classify every job; `expected` are non-terminal states the scenario accepts."""
    accepted = TERMINAL | set(expected)
    states = cluster.states(job_ids)
    where = cluster.message_ids()
    with_message = set(where["list"]) | set(where["unacked"]) | set(where["scheduled"])
    lost, pending = [], []
    for job_id, state in states.items():
        if state in accepted:
            continue
        if state is not None and job_id in with_message:
            pending.append(job_id)
        else:
            lost.append(job_id)
    by_state = Counter(s or "missing" for s in states.values())
    return Account(len(job_ids), by_state, lost, pending)


@dataclass
class Row:
    """One line of the fault report."""

    scenario: str
    enqueued: int
    succeeded: int
    failed: int
    dead: int
    lost: int
    duplicate_executions: int
    effect_duplicates: int | None
    """Duplicate effects of idempotent jobs (None: the scenario has none)."""
    recovery_s: float | None
    notes: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        scenario: str,
        acct: Account,
        *,
        duplicate_executions: int,
        effect_duplicates: int | None,
        recovery_s: float | None,
        notes: str = "",
        **extra: object,
    ) -> Row:
        return cls(
            scenario,
            acct.enqueued,
            acct.succeeded,
            acct.failed,
            acct.dead,
            len(acct.lost),
            duplicate_executions,
            effect_duplicates,
            None if recovery_s is None else round(recovery_s, 2),
            notes,
            dict(extra),
        )


class Report:
    """Rows collected over a test session, written as Markdown and JSON."""

    HEADER = (
        "| scenario | enqueued | succeeded | failed | dead | lost | duplicate executions "
        "| effect duplicates | recovery (s) | notes |"
    )

    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(self, row: Row) -> None:
        self.rows.append(row)

    def markdown(self) -> str:
        lines = [self.HEADER, "|" + "---|" * 10]
        for r in self.rows:
            effect = "-" if r.effect_duplicates is None else str(r.effect_duplicates)
            recovery = "-" if r.recovery_s is None else f"{r.recovery_s:.1f}"
            lines.append(
                f"| {r.scenario} | {r.enqueued} | {r.succeeded} | {r.failed} | {r.dead} "
                f"| {r.lost} | {r.duplicate_executions} | {effect} | {recovery} | {r.notes} |"
            )
        return "\n".join(lines) + "\n"

    def write(self, directory: Path) -> tuple[Path, Path]:
        md = directory / "faults-report.md"
        md.write_text(self.markdown())
        js = directory / "faults-report.json"
        js.write_text(json.dumps([asdict(r) for r in self.rows], indent=2) + "\n")
        return md, js


REPORT = Report()
"""The session's report (filled by the scenarios, written by `conftest`)."""
