"""Batch messages end to end: webhook rows handed to the broker together travel as one
``deliver_webhooks`` message, and a plain worker under each pool gives every row of it its
own attempt and outcome, and every create its note (the attempts write the note jobs, and
the worker publishes them itself, as ``write_notes`` batches), exactly once.

The API publishes to a Redis database no worker reads; the test then hands the rows over
in one batch per kind on the worker's broker, so the worker sees nothing but the batch
tasks.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from redis import Redis

from crm_service import worker
from crm_service.settings import Settings
from tests.e2e.conftest import CrmStack, Pool, crm_env, run_crm
from tests.support.databases import POSTGRES_DSN
from tests.support.processes import (
    LoopbackReceiver,
    ReceivedRequest,
    RedisServer,
    Reply,
    wait_until,
)

pytestmark = pytest.mark.e2e

WEBHOOKS = "/webhooks/crm"
TIMEOUT = 60.0
HISTORY = {"items": [], "offset": 1, "limit": 100, "total": 0}


@pytest.fixture
def stack(
    module_database_url: str,
    redis_server: RedisServer,
    worker_pool: Pool,
    tmp_path: Path,
) -> Iterator[CrmStack]:
    worker_env = crm_env(module_database_url, redis_server.url(0), redis_server.url(1))
    api_env = {**worker_env, "CELERY_BROKER_URL": redis_server.url(2)}  # nobody consumes it
    with run_crm(
        api_env, tmp_path, worker=False, worker_env=worker_env, **worker_pool.options
    ) as running:
        yield running


def outbox_rows(database_url: str, team_id: int) -> list[tuple[int, str]]:
    name = database_url.rsplit("/", 1)[1]
    connection = psycopg2.connect(f"{POSTGRES_DSN.rsplit('/', 1)[0]}/{name}")
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id, kind FROM outbox_events WHERE team_id = %s ORDER BY id", (team_id,)
            )
            return [(int(row[0]), str(row[1])) for row in cursor.fetchall()]
    finally:
        connection.close()


def hand_over_as_batches(
    monkeypatch: pytest.MonkeyPatch, broker_url: str, items: list[tuple[int, str]]
) -> None:
    """Publish the rows on the worker's broker, as one message."""
    app = worker.make_celery(
        Settings(database_url="sqlite+aiosqlite://", celery_broker_url=broker_url)
    )
    monkeypatch.setattr(worker, "celery_app", app)
    worker.enqueue_outbox(items)
    redis = Redis.from_url(broker_url)
    tasks = [
        json.loads(raw)["headers"]["task"]
        for queue in ("webhooks", "notes")
        for raw in redis.lrange(queue, 0, -1)
    ]
    redis.close()
    assert tasks == ["crm.events.deliver_webhooks"]


def test_every_row_of_a_batch_is_delivered_once_with_its_own_outcome_and_note(
    stack: CrmStack,
    receiver: LoopbackReceiver,
    redis_server: RedisServer,
    module_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failing_room = f"room-fails-{uuid.uuid4().hex[:6]}"

    def omni(request: ReceivedRequest, _seen_before: int) -> Reply:
        if request.method == "GET":
            return Reply(body=json.dumps(HISTORY).encode())
        room = json.loads(request.body)["data"]["channel_integration_room_id"]
        return Reply(400 if room == failing_room else 200)

    endpoint = receiver.endpoint(omni)
    team = stack.create_team(endpoint.base_url)
    records = [stack.create(team, "deals") for _ in range(5)]
    records.append(stack.create(team, "deals", channel_integration_room_id=failing_room))
    items = outbox_rows(module_database_url, team.id)
    assert Counter(kind for _, kind in items) == {"webhook": 6}  # the notes come from them

    hand_over_as_batches(monkeypatch, redis_server.url(0), items)
    stack.start_worker()

    deliveries = stack.wait_for_deliveries(
        team,
        lambda found: len(found) == 6 and all(d["status"] != "pending" for d in found),
        timeout=TIMEOUT,
    )
    status_by_record = {d["record_id"]: d["status"] for d in deliveries}
    assert status_by_record == {
        record["id"]: "failed"
        if record["channel_integration_room_id"] == failing_room
        else "delivered"
        for record in records
    }
    assert all(len(d["attempts"]) == 1 for d in deliveries)
    per_id = Counter(request.webhook_id for request in endpoint.requests_to(WEBHOOKS))
    assert len(per_id) == 6 and set(per_id.values()) == {1}

    def notes() -> list[Any]:
        found = []
        for record in records:
            response = stack.http.get(
                f"/api/mobile/v2.8/deals/{record['id']}/timeline", headers=team.auth
            )
            assert response.status_code == 200, response.text
            found.extend(response.json()["items"])
        return found if len(found) == 6 else []

    assert len(wait_until(notes, timeout=TIMEOUT, message=stack.logs)) == 6
