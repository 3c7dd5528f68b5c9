"""``make bench`` runs from a checkout: a short run of ``python -m bench.run`` (what the
Makefile target calls) against the real stack writes a complete report. Nothing here
judges speed (benchmarks are never timed assertions); it checks that every phase ran,
measured something and saw no errors, so the harness cannot rot unnoticed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.create_cores import measure
from bench.run import TARGETS

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_a_short_bench_run_measures_every_path_and_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--duration",
            "1",
            "--rate",
            "20",
            "--latency-seconds",
            "1",
            "--pools",
            "solo",
            "--fast-delivery-events",
            "200",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    report = json.loads(out.read_text())

    assert set(report["throughput"]) == {"create", "preview_304", "preview_200", "receiver"}
    for name, entry in report["throughput"].items():
        assert entry["requests_per_second"] > 0 and entry["ratio"] > 0, name
        assert entry["baseline_requests_per_second"] > 0, name
        assert sum(entry["errors"].values()) == 0, (name, entry["errors"])
    assert report["delivery"]["events"] >= report["delivery"]["backlog_at_start"] > 0
    assert report["delivery"]["events_per_second"] > 0
    fast = report["delivery_fast"]
    assert fast["events"] == fast["received"] == 200 and fast["events_per_second"] > 0
    [latency] = report["latency"].values()
    assert latency["creates"] == 20 and latency["failed_creates"] == 0
    assert latency["not_visible_after_30s"] == 0
    assert 0 < latency["p50_ms"] <= latency["p95_ms"] <= latency["max_ms"]
    cpu = latency["cpu_ms_per_create"]
    assert all(cpu[role] > 0 for role in ("crm", "omni", "worker", "postgres")), cpu
    assert cpu["total"] == pytest.approx(sum(cpu[r] for r in ("crm", "omni", "worker", "postgres")))
    assert {"crm", "omni", "worker0"} <= set(report["rss_mb"])
    table = completed.stdout.split("| path |", 1)[1]
    assert table.count("\n|") >= 9 and f"≥ {TARGETS['create']}" in table


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_the_create_with_both_cores_full_measures_each_side_without_errors() -> None:
    report = measure(rounds=1, seconds=1)

    for side in ("crm", "bare"):
        [run] = report["runs"][side]
        assert run["requests_per_second"] > 0 and run["busy_ms_per_request"] > 0, side
        assert run["errors"] == 0, side
    busy = report["busy_ms_per_request"]
    assert report["ratio_with_both_cores_full"] == pytest.approx(busy["bare"] / busy["crm"], 1e-3)
    assert report["pair_ratios"] == [report["ratio_with_both_cores_full"]]
