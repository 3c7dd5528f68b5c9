"""The broker is down when a bot record commits: the API still answers 201, the create's
event waits, and the sweep hands it to a worker once the broker is back, whose claim
writes the note's job and publishes it (no note is lost to a broker outage)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Pool, crm_env, run_crm
from tests.support.processes import (
    LoopbackReceiver,
    ReceivedRequest,
    RedisServer,
    Reply,
    wait_until,
)

pytestmark = pytest.mark.e2e

HISTORY = {
    "items": [
        {
            "id": 1,
            "room_id": "r",
            "sender": "Budi",
            "sender_type": "customer",
            "text": "Masih bisa pesan?",
            "created_at": "2026-11-27T21:05:29.123456Z",
        }
    ],
    "offset": 1,
    "limit": 100,
    "total": 1,
}


def history_or_accept(request: ReceivedRequest, _seen_before: int) -> Reply:
    return Reply(body=json.dumps(HISTORY).encode()) if request.method == "GET" else Reply(200)


def test_a_note_committed_while_the_broker_is_down_is_written_once_it_is_back(
    crm_database_url: str, receiver: LoopbackReceiver, worker_pool: Pool, tmp_path: Path
) -> None:
    broker = RedisServer()  # not started yet: its port refuses connections
    env = crm_env(crm_database_url, broker.url(), redis_url=None)
    omni = receiver.endpoint(history_or_accept)
    with run_crm(env, tmp_path, worker=False, **worker_pool.options) as stack:
        team = stack.create_team(omni.base_url)
        deal = stack.create(team, "deals")  # asserts the 201
        stack.api.wait_for_log("outbox enqueue failed", timeout=10)

        def timeline() -> list[dict[str, Any]]:
            response = stack.http.get(
                f"/api/mobile/v2.8/deals/{deal['id']}/timeline", headers=team.auth
            )
            assert response.status_code == 200, response.text
            items: list[dict[str, Any]] = response.json()["items"]
            return items

        assert timeline() == []
        with broker:
            stack.start_worker()
            stack.start_beat()
            [note] = wait_until(timeline, timeout=30, message=stack.logs)
            stack.worker.stop()  # type: ignore[union-attr]

    assert note["excerpt"] == "[2026-11-27 21:05 UTC] Budi: Masih bisa pesan?"
