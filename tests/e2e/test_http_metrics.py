"""Request count and latency by route and status on both APIs, correct totals when an API
runs several uvicorn workers, and no always-zero copies of the worker's metrics."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ADMIN_KEY, crm_env
from tests.support.processes import ServiceProcess, free_port, service_env

pytestmark = pytest.mark.e2e

REQUESTS = 30


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.rsplit("}", 1)[0]))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def start_api(
    app: str, env: dict[str, str], log_dir: Path, *, workers: int
) -> tuple[ServiceProcess, str]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        command += ["--workers", str(workers)]
    process = ServiceProcess(app.split(".")[0], command, env, log_dir / f"{app}.log").start()
    url = f"http://127.0.0.1:{port}"
    process.wait_for_http(f"{url}/healthz", timeout=60)
    return process, url


def test_the_crm_api_counts_requests_of_all_its_workers_by_route_and_status(
    crm_database_url: str, tmp_path: Path
) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    env = crm_env(
        crm_database_url, "redis://127.0.0.1:1/0", None, PROMETHEUS_MULTIPROC_DIR=directory
    )
    process, url = start_api("crm_service.main:app", env, tmp_path, workers=2)
    try:
        before = httpx.get(f"{url}/metrics").text
        for number in range(REQUESTS):  # a new connection each: both workers answer some
            httpx.get(f"{url}/api/v3.1/deals/{number + 1}", headers={"Authorization": "Bearer x"})
        httpx.get(f"{url}/admin/deliveries", headers={"X-Admin-Key": ADMIN_KEY})
        text = httpx.get(f"{url}/metrics").text
    finally:
        process.stop()

    route = {"handler": "/api/v3.1/deals/{record_id}", "method": "GET", "status": "401"}
    assert (
        sample(text, "http_requests_total", **route)
        - sample(before, "http_requests_total", **route)
        == REQUESTS
    )
    assert sample(text, "http_request_duration_seconds_count", handler=route["handler"]) >= REQUESTS
    assert sample(text, "http_requests_total", handler="/admin/deliveries", status="200") == 1
    pids = {path.stem.rsplit("_", 1)[1] for path in directory.glob("*.db")}
    assert len(pids) >= 2, pids  # both workers wrote their counts
    assert "crm_webhook_deliveries" not in text  # the worker's, never counted here
    assert "timeline_log_creation_failed" not in text


def test_the_omni_api_counts_requests_by_route_and_status(
    omni_database_url: str, tmp_path: Path
) -> None:
    env = service_env(OMNI_DATABASE_URL=omni_database_url, OMNI_ADMIN_KEY="metrics-admin-key")
    process, url = start_api("omni_service.main:app", env, tmp_path, workers=1)
    try:
        for _ in range(3):
            httpx.get(f"{url}/api/v1/rooms/room-1/crm_preview")
        text = httpx.get(f"{url}/metrics").text
    finally:
        process.stop()

    assert (
        sample(
            text,
            "http_requests_total",
            handler="/api/v1/rooms/{room_id}/crm_preview",
            method="GET",
            status="401",
        )
        == 3
    )
