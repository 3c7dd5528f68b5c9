"""Timeline notes written by a real Celery worker: the CRM API (uvicorn) and a worker with
beat as processes, PostgreSQL, a private Redis broker, and a loopback server standing in
for Omni's history API.

The processes are shared by this module's tests; each test makes its own team linked to
its own endpoint.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import CrmStack, Pool, Team, crm_env, run_crm
from tests.support.processes import (
    LoopbackReceiver,
    ReceivedRequest,
    RedisServer,
    Reply,
    replies,
    wait_until,
)

pytestmark = pytest.mark.e2e

OMNI_TIMEOUT_SECONDS = 0.5
TIMEOUT = 30.0
HISTORY = {
    "items": [
        {
            "id": 2,
            "room_id": "r",
            "sender": "Agent Sari",
            "sender_type": "agent",
            "text": "Noted, a bot will open the deal 🙏",
            "created_at": "2026-11-27T21:06:00.000000Z",
        },
        {
            "id": 1,
            "room_id": "r",
            "sender": "Budi",
            "sender_type": "customer",
            "text": "Saya mau pesan 20 unit",
            "created_at": "2026-11-27T21:05:29.123456Z",
        },
    ],
    "offset": 1,
    "limit": 100,
    "total": 2,
}
EXCERPT = (
    "[2026-11-27 21:05 UTC] Budi: Saya mau pesan 20 unit\n"
    "[2026-11-27 21:06 UTC] Agent Sari: Noted, a bot will open the deal 🙏"
)


@pytest.fixture(scope="module")
def stack(
    module_database_url: str,
    module_redis: RedisServer,
    module_worker_pool: Pool,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CrmStack]:
    env = crm_env(
        module_database_url,
        module_redis.url(0),
        module_redis.url(1),
        CRM_OMNI_TIMEOUT_SECONDS=OMNI_TIMEOUT_SECONDS,
    )
    log_dir: Path = tmp_path_factory.mktemp("timeline")
    with run_crm(env, log_dir, **module_worker_pool.options) as running:
        yield running


def history_or_accept(history: Reply) -> Any:
    """Omni as the worker sees it: the history page on GET, 200 for webhooks."""

    def respond(request: ReceivedRequest, _seen_before: int) -> Reply:
        return history if request.method == "GET" else Reply(200)

    return respond


def wait_for_timeline(
    stack: CrmStack, team: Team, kind: str, record_id: int
) -> list[dict[str, Any]]:
    def entries() -> list[dict[str, Any]]:
        response = stack.http.get(
            f"/api/mobile/v2.8/{kind}/{record_id}/timeline", headers=team.auth
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    return wait_until(entries, timeout=TIMEOUT, message=stack.logs)


def test_the_worker_writes_the_note_from_the_history_omni_serves(
    stack: CrmStack, receiver: LoopbackReceiver
) -> None:
    omni = receiver.endpoint(history_or_accept(Reply(body=json.dumps(HISTORY).encode())))
    team = stack.create_team(omni.base_url)
    deal = stack.create(team, "deals", channel_integration_room_id="wa-6281234567890")

    [entry] = wait_for_timeline(stack, team, "deals", deal["id"])

    assert (entry["excerpt"], entry["room_deeplink"], entry["creator_name"]) == (
        EXCERPT,
        f"{omni.base_url}/inbox/rooms/wa-6281234567890",
        "Bot",
    )
    [history_request] = [request for request in omni.requests if request.method == "GET"]
    assert history_request.path == "/api/open/v1/messages/rooms/wa-6281234567890?offset=1&limit=100"
    assert history_request.headers["authorization"] == "Bearer omni-token"


def test_omni_slower_than_its_timeout_still_gets_the_note_without_excerpt(
    stack: CrmStack, receiver: LoopbackReceiver
) -> None:
    slow = Reply(body=json.dumps(HISTORY).encode(), delay=OMNI_TIMEOUT_SECONDS * 4)
    omni = receiver.endpoint(history_or_accept(slow))
    team = stack.create_team(omni.base_url)
    ticket = stack.create(team, "tickets", creator_flag="agentic_ai")

    [entry] = wait_for_timeline(stack, team, "tickets", ticket["id"])

    assert (entry["excerpt"], entry["creator_name"]) == (None, "AI")
    assert entry["room_deeplink"] == (
        f"{omni.base_url}/inbox/rooms/{ticket['channel_integration_room_id']}"
    )


def test_omni_answering_500_still_gets_the_note_without_excerpt(
    stack: CrmStack, receiver: LoopbackReceiver
) -> None:
    omni = receiver.endpoint(replies(500))
    team = stack.create_team(omni.base_url)
    deal = stack.create(team, "deals")

    [entry] = wait_for_timeline(stack, team, "deals", deal["id"])

    assert (entry["excerpt"], entry["creator_name"]) == (None, "Bot")
