"""Schemathesis against both services as real processes: whatever its generator sends
to any documented operation — admin API included — is never answered with a 5xx
(issue 8). Bounded (examples per operation, a time limit) to stay well under ~90 s per
service on a small machine."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ADMIN_KEY, crm_env
from tests.support.processes import ServiceProcess, service_env, start_uvicorn

pytestmark = pytest.mark.e2e

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
FUZZ_TIMEOUT_SECONDS = 150


def fuzz(base_url: str, headers: dict[str, str], workdir: Path) -> None:
    command = [
        str(SCHEMATHESIS),
        "--no-color",
        "run",
        f"{base_url}/openapi.json",
        "--url",
        base_url,
        "--phases=examples,coverage,fuzzing",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "15",
        "--request-timeout",
        "5",
        "--seed",
        "8",
        "--suppress-health-check",
        "all",
        "--max-time",
        "60",
        # A server-sent event stream never ends, so every request to it would time out.
        "--exclude-path-regex",
        "/stream$",
    ]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    # Run where schemathesis may leave its cache (``.schemathesis/``) without a trace.
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=FUZZ_TIMEOUT_SECONDS,
        check=False,
        cwd=workdir,
    )
    assert result.returncode == 0, result.stdout[-12000:] + result.stderr[-4000:]


@pytest.fixture
def crm_api(crm_database_url: str, tmp_path: Path) -> Iterator[str]:
    env = crm_env(crm_database_url, "memory://", None)
    process, url = start_uvicorn("crm_service.main:app", env, log_dir=tmp_path)
    try:
        yield url
    finally:
        process.stop()


@pytest.fixture
def omni_api(omni_database_url: str, tmp_path: Path) -> Iterator[str]:
    env = service_env(OMNI_DATABASE_URL=omni_database_url, OMNI_ADMIN_KEY=ADMIN_KEY)
    process: ServiceProcess
    process, url = start_uvicorn("omni_service.main:app", env, log_dir=tmp_path)
    try:
        yield url
    finally:
        process.stop()


def test_no_generated_request_makes_the_crm_fail(crm_api: str, tmp_path: Path) -> None:
    team = httpx.post(
        f"{crm_api}/admin/teams",
        json={"name": "Fuzz", "external_company_id": "fuzz-co"},
        headers={"X-Admin-Key": ADMIN_KEY},
    )
    assert team.status_code == 201, team.text
    token = team.json()["access_token"]
    fuzz(crm_api, {"Authorization": f"Bearer {token}", "X-Admin-Key": ADMIN_KEY}, tmp_path)


def test_no_generated_request_makes_omni_fail(omni_api: str, tmp_path: Path) -> None:
    organization = httpx.post(
        f"{omni_api}/admin/organizations",
        json={"name": "Fuzz", "company_id": "fuzz-co", "webhook_secret": "whsec_" + "A" * 32},
        headers={"X-Admin-Key": ADMIN_KEY},
    )
    assert organization.status_code == 201, organization.text
    token = organization.json()["api_token"]
    fuzz(omni_api, {"Authorization": f"Bearer {token}", "X-Admin-Key": ADMIN_KEY}, tmp_path)
