"""`python -m bench`: run the benchmarks and write the reports (see bench/README.md)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from bench.plan import PROFILES
from bench.report import write_reports
from bench.runner import WORKLOADS, Runner
from bench.systems import SYSTEMS

ALL_SYSTEMS = [*SYSTEMS, "flower"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    profile = parser.add_mutually_exclusive_group()
    profile.add_argument(
        "--quick",
        action="store_const",
        const="quick",
        dest="profile",
        help="a short run (about 3 minutes): small N, one repetition",
    )
    profile.add_argument(
        "--smoke",
        action="store_const",
        const="smoke",
        dest="profile",
        help="a tiny run that only checks the harness works",
    )
    parser.set_defaults(profile="full")
    parser.add_argument(
        "--systems",
        default=",".join(ALL_SYSTEMS),
        help=f"comma-separated subset of: {', '.join(ALL_SYSTEMS)}",
    )
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated subset of: {', '.join(WORKLOADS)}",
    )
    parser.add_argument("--reps", type=int, default=None, help="repetitions (profile default)")
    parser.add_argument("--drain-jobs", type=int, default=None, help="N of the drain workload")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent / "results",
        help="where the reports go (default: bench/results)",
    )
    return parser.parse_args(argv)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = PROFILES[args.profile]
    if args.reps is not None:
        plan = replace(plan, reps=args.reps)
    if args.drain_jobs is not None:
        plan = replace(plan, drain_jobs=args.drain_jobs)
    try:
        runner = Runner(
            plan,
            [s.strip() for s in args.systems.split(",") if s.strip()],
            [w.strip() for w in args.workloads.split(",") if w.strip()],
            log=lambda line: print(line, flush=True),
        )
    except ValueError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    report = runner.run()
    md, js = write_reports(report, args.out)
    print(f"\nwrote {md} and {js}\n")
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
