"""Creation counters ``bot_deal_created``, ``ai_deal_created`` and their ticket twins:
one per committed bot/AI create, nothing for other records, failures or replays."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from crm_service.metrics import API_REGISTRY as REGISTRY
from tests.crm.conftest import TeamHandle, create_record

COUNTERS = ("bot_deal_created", "ai_deal_created", "bot_ticket_created", "ai_ticket_created")


def counter_values() -> dict[str, float]:
    return {name: REGISTRY.get_sample_value(f"{name}_total") or 0.0 for name in COUNTERS}


@pytest.fixture
def counted() -> Callable[[], dict[str, float]]:
    """How much each counter moved since the test started (counters are process-wide)."""
    start = counter_values()

    def delta() -> dict[str, float]:
        now = counter_values()
        return {name: now[name] - start[name] for name in COUNTERS if now[name] != start[name]}

    return delta


@pytest.mark.parametrize(
    ("kind", "flag", "counter"),
    [
        ("deals", "bot", "bot_deal_created"),
        ("deals", "AGENTIC_AI", "ai_deal_created"),
        ("tickets", "Bot", "bot_ticket_created"),
        ("tickets", "agentic_ai", "ai_ticket_created"),
    ],
)
async def test_each_bot_or_ai_create_counts_once_on_its_counter(
    client: httpx.AsyncClient,
    team: TeamHandle,
    counted: Callable[[], dict[str, float]],
    kind: str,
    flag: str,
    counter: str,
) -> None:
    await create_record(client, team, kind, creator_flag=flag)
    await create_record(client, team, kind, creator_flag=flag)
    assert counted() == {counter: 2.0}


@pytest.mark.parametrize("flag", [None, "robot"])
async def test_records_without_a_recognised_creator_flag_count_nothing(
    client: httpx.AsyncClient,
    team: TeamHandle,
    counted: Callable[[], dict[str, float]],
    flag: str | None,
) -> None:
    await create_record(client, team, "deals", creator_flag=flag)
    await create_record(client, team, "tickets", creator_flag=flag)
    assert counted() == {}


async def test_a_rejected_create_counts_nothing(
    client: httpx.AsyncClient, team: TeamHandle, counted: Callable[[], dict[str, float]]
) -> None:
    response = await client.post(
        "/api/v3.1/deals",
        json={"name": "Deal", "creator_flag": "bot", "crm_stage_id": 2_000_000},
        headers=team.auth,
    )
    assert response.status_code == 422
    assert counted() == {}


async def test_an_idempotent_replay_counts_nothing_more(
    client: httpx.AsyncClient, team: TeamHandle, counted: Callable[[], dict[str, float]]
) -> None:
    headers = {**team.auth, "Idempotency-Key": "once"}
    for _ in range(3):
        await client.post(
            "/api/v3.1/deals", json={"name": "Deal", "creator_flag": "bot"}, headers=headers
        )
    assert counted() == {"bot_deal_created": 1.0}


async def test_updates_and_deletes_count_nothing(
    client: httpx.AsyncClient, team: TeamHandle, counted: Callable[[], dict[str, float]]
) -> None:
    deal = await create_record(client, team, "deals", creator_flag="bot")
    await client.patch(f"/api/v3.1/deals/{deal['id']}", json={"name": "X"}, headers=team.auth)
    await client.delete(f"/api/v3.1/deals/{deal['id']}", headers=team.auth)
    assert counted() == {"bot_deal_created": 1.0}
