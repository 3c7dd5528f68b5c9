"""docker-compose.yml: valid Compose, every long-running service checked for health,
nothing started before what it needs is healthy, one image, the plain worker command."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ops.compose import APP_SERVICES, LONG_RUNNING, services
from tests.support.processes import ROOT


def test_the_compose_file_is_valid_against_the_compose_spec() -> None:
    binary = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    if binary is None:
        pytest.skip("check-jsonschema is not installed (dev extra)")

    result = subprocess.run(
        [binary, "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml")],
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_every_long_running_service_has_a_health_check_and_restarts(name: str) -> None:
    service = services()[name]

    assert service["healthcheck"]["test"]
    assert service["restart"] == "unless-stopped"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_dependency_is_awaited_healthy_or_completed(name: str) -> None:
    conditions = {
        dependency: spec["condition"] for dependency, spec in services()[name]["depends_on"].items()
    }

    assert set(conditions.values()) <= {"service_healthy", "service_completed_successfully"}
    if name == "migrate":
        assert conditions == {"postgres": "service_healthy"}
    else:
        assert conditions["migrate"] == "service_completed_successfully"
        assert conditions["redis"] == "service_healthy"


def test_all_app_services_run_one_image() -> None:
    images = {services()[name]["image"] for name in APP_SERVICES}

    assert images == {"crm-parity:local"}


def test_the_worker_is_the_plain_worker_and_beat_runs_apart() -> None:
    worker = " ".join(services()["crm-worker"]["command"])
    beat = services()["crm-beat"]["command"]

    assert "exec celery -A crm_service.worker:celery_app worker " in worker
    assert "--queues" not in worker and " -Q" not in worker
    assert "--beat" not in worker
    assert beat[:4] == ["celery", "-A", "crm_service.worker:celery_app", "beat"]


def test_compose_ships_no_working_admin_key() -> None:
    environment = services()["crm-api"]["environment"]

    assert environment["CRM_ADMIN_KEY"] == "${CRM_ADMIN_KEY:-change-me}"
    assert environment["OMNI_ADMIN_KEY"] == "${OMNI_ADMIN_KEY:-change-me}"
