"""The create's ratio when both cores, not one process, are the limit.

    .venv/bin/python -m bench.create_cores --rounds 4 --seconds 8

``make bench`` compares requests per second. On a slow hour of this machine each side's one
uvicorn process is the limit, on a fast hour the two cores are (wrk, the app and
PostgreSQL together), and the two regimes give different ratios. This reads the second
one in any hour: the machine's busy CPU per request (``/proc/stat``: user, nice, system,
irq and softirq of every process, wrk and PostgreSQL's backends included), the CRM's
``POST /api/v3.1/deals`` and the bare one-INSERT app alternating on one stack (the one
``make bench`` starts, without workers), ``VACUUM ANALYZE`` before each run, and a 2 s
warm-up round. With both cores full, throughput is the cores over that cost, so the
ratio is the bare app's busy CPU per request over the CRM's. Whatever else runs on the
machine is charged to both sides alike; keep it quiet. Needs wrk.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.run import create_sides, drive_create, start_bare_insert, vacuum
from bench.stack import plain_dsn, running_stack

WARM_UP_SECONDS = 2.0


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def measure(rounds: int, seconds: float) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {"crm": [], "bare": []}
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as scratch,
        running_stack(Path(scratch), workers=False) as stack,
    ):
        dsn = plain_dsn(stack.crm_database)
        bare, bare_url = start_bare_insert(stack)
        sides = create_sides(stack, bare_url)
        try:
            for round_ in range(rounds + 1):
                for name, side in sides.items():
                    vacuum(dsn)
                    before = busy_seconds()
                    result = drive_create(
                        stack, side, f"{name}-{round_}", seconds if round_ else WARM_UP_SECONDS
                    )
                    spent = busy_seconds() - before
                    if round_ and result.requests:
                        run = {
                            "requests_per_second": round(result.requests_per_second, 1),
                            "busy_ms_per_request": round(1000 * spent / result.requests, 4),
                            # A side that answers errors is fast for nothing: look here.
                            "errors": sum(result.errors.values()),
                        }
                        runs[name].append(run)
                        print(f"round {round_} {name:<4} {run}", flush=True)
        finally:
            bare.stop()
    pairs = [
        round(theirs["busy_ms_per_request"] / ours["busy_ms_per_request"], 3)
        for ours, theirs in zip(runs["crm"], runs["bare"], strict=True)
    ]
    busy = {
        name: statistics.median(run["busy_ms_per_request"] for run in side)
        for name, side in runs.items()
    }
    return {
        "runs": runs,
        "busy_ms_per_request": busy,
        "pair_ratios": pairs,
        "ratio_with_both_cores_full": round(busy["bare"] / busy["crm"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="measured rounds per side")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per wrk run")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 20 or not 1 <= args.seconds <= 60:
        parser.error("--rounds must be 1..20 and --seconds 1..60")
    report = measure(args.rounds, args.seconds)
    print(json.dumps({key: report[key] for key in report if key != "runs"}, indent=2))


if __name__ == "__main__":
    main()
