"""With a server database configured, the APIs refuse the development admin keys (and the
``change-me`` placeholder) before serving, with one line naming the variable to set."""

from __future__ import annotations

import subprocess
import sys

import pytest

from service_kit.production import STARTUP_FAILURE
from tests.support.processes import ROOT, free_port, service_env

POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/never_opened"


def start(app: str, **env: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "uvicorn", app, "--port", str(free_port())]
    return subprocess.run(
        command, env=service_env(**env), cwd=ROOT, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("key", [None, "change-me"])
def test_the_crm_api_refuses_a_development_admin_key_with_postgres(key: str | None) -> None:
    env = {"CRM_DATABASE_URL": POSTGRES_URL} | ({"CRM_ADMIN_KEY": key} if key else {})

    result = start("crm_service.main:app", **env)

    assert result.returncode == STARTUP_FAILURE
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "set CRM_ADMIN_KEY" in lines[0]


@pytest.mark.parametrize("key", [None, "change-me"])
def test_the_omni_api_refuses_a_development_admin_key_with_postgres(key: str | None) -> None:
    env = {"OMNI_DATABASE_URL": POSTGRES_URL} | ({"OMNI_ADMIN_KEY": key} if key else {})

    result = start("omni_service.main:app", **env)

    assert result.returncode == STARTUP_FAILURE
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "set OMNI_ADMIN_KEY" in lines[0]


def test_the_embedded_mode_keeps_its_development_key() -> None:
    from crm_service.main import create_app
    from crm_service.settings import Settings

    assert create_app(Settings(database_url="sqlite+aiosqlite:///:memory:")) is not None
