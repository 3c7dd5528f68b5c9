"""The README's run command: `crm-parity demo` brings the embedded system up (SQLite,
SQLite broker, no Redis) and its walkthrough ends with every parity step observed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import free_port, service_env

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_demo_walkthrough_runs_embedded_and_shows_every_parity_step(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "crm_service.cli", "demo", "--exit",
        "--crm-port", str(free_port()), "--omni-port", str(free_port()),
        "--data-dir", str(tmp_path / "demo"),
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=ROOT, env=service_env(), capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    output = result.stdout
    for step in (
        "token refreshed after a 401",
        "creator 'Bot'",
        "The inbox shows the deal in the room",
        "The CRM timeline has the chat note",
        "Budi: Halo",
        "by AI",
        "stage Qualified, version 2",
        "'create_deal': True",
        "qontak.crm.deal.create delivered",
    ):
        assert step in output, f"missing {step!r} in:\n{output}"
    assert (tmp_path / "demo" / "crm.db").exists()
    assert (tmp_path / "demo" / "celery-broker.db").exists()
