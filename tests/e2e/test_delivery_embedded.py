"""The embedded mode (DESIGN.md §2): SQLite database, SQLite-backed Celery broker, no
Redis — the same processes deliver the same signed events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared_contracts.signatures import verify
from tests.e2e.conftest import Pool, crm_env, run_crm
from tests.support.databases import migrate
from tests.support.processes import LoopbackReceiver, replies

pytestmark = pytest.mark.e2e


def test_embedded_mode_delivers_and_retries_without_any_server(
    receiver: LoopbackReceiver, worker_pool: Pool, tmp_path: Path
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}"
    migrate("crm", database_url)
    env = crm_env(database_url, f"sqla+sqlite:///{tmp_path / 'broker.db'}", redis_url=None)
    omni = receiver.endpoint(replies(503, 200), only="/webhooks/crm")
    with run_crm(env, tmp_path, **worker_pool.options) as stack:
        team = stack.create_team(omni.base_url)
        record = stack.create(team, "tickets")

        [entry] = stack.wait_for_deliveries(
            team, lambda items: items[0]["status"] == "delivered", timeout=60
        )

    assert [attempt["status_code"] for attempt in entry["attempts"]] == [503, 200]
    first, second = omni.requests
    assert first.webhook_id == second.webhook_id == entry["webhook_id"]
    verify(second.body, second.headers, team.webhook_secret)
    assert json.loads(second.body)["data"]["id"] == record["id"]
