"""Pipelines and where a deal lands: default pipeline and first stage, ids or names, a
stage alone, and nothing of another team's (DESIGN.md §3, first rule)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.crm.conftest import TeamHandle, add_pipeline, create_deal, row_counts


async def default_pipeline(client: httpx.AsyncClient, team: TeamHandle) -> dict[str, object]:
    items = (await client.get("/api/v3.1/pipelines", headers=team.auth)).json()["items"]
    pipeline: dict[str, object] = items[0]
    return pipeline


async def test_pipelines_list_the_default_pipeline_with_stages_in_order(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    response = await client.get("/api/v3.1/pipelines", headers=team.auth)
    assert response.status_code == 200
    [pipeline] = response.json()["items"]
    assert pipeline["name"] == "Sales"
    assert pipeline["is_default"] is True
    assert [(s["name"], s["position"]) for s in pipeline["stages"]] == [
        ("New", 0),
        ("Qualified", 1),
        ("Proposal", 2),
        ("Won", 3),
        ("Lost", 4),
    ]


async def test_pipelines_list_the_default_first_then_the_others(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    other_id, _ = await add_pipeline(db, team.id, "Renewals", ["Due", "Renewed"])
    items = (await client.get("/api/v3.1/pipelines", headers=team.auth)).json()["items"]
    assert [(p["name"], p["is_default"]) for p in items] == [("Sales", True), ("Renewals", False)]
    assert items[1]["id"] == other_id


async def test_pipelines_never_list_another_teams_pipelines(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle, other_team: TeamHandle
) -> None:
    await add_pipeline(db, other_team.id, "Globex only", ["One"])
    items = (await client.get("/api/v3.1/pipelines", headers=team.auth)).json()["items"]
    assert [p["name"] for p in items] == ["Sales"]


async def test_deal_without_pipeline_or_stage_gets_the_default_pipeline_and_first_stage(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    pipeline = await default_pipeline(client, team)
    deal = await create_deal(client, team)
    first_stage = pipeline["stages"][0]  # type: ignore[index]
    assert deal["pipeline"] == {"id": pipeline["id"], "name": "Sales"}
    assert deal["stage"] == {"id": first_stage["id"], "name": "New"}
    assert (deal["crm_pipeline_id"], deal["crm_stage_id"]) == (pipeline["id"], first_stage["id"])


async def test_deal_with_a_pipeline_alone_gets_that_pipelines_first_stage(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    pipeline_id, stage_ids = await add_pipeline(db, team.id, "Renewals", ["Due", "Renewed"])
    deal = await create_deal(client, team, crm_pipeline_id=pipeline_id)
    assert deal["pipeline"] == {"id": pipeline_id, "name": "Renewals"}
    assert deal["stage"] == {"id": stage_ids[0], "name": "Due"}


async def test_deal_with_a_stage_alone_moves_to_that_stages_pipeline(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    pipeline_id, stage_ids = await add_pipeline(db, team.id, "Renewals", ["Due", "Renewed"])
    deal = await create_deal(client, team, crm_stage_id=stage_ids[1])
    assert deal["pipeline"] == {"id": pipeline_id, "name": "Renewals"}
    assert deal["stage"] == {"id": stage_ids[1], "name": "Renewed"}


async def test_deal_with_pipeline_and_stage_ids_gets_exactly_those(
    client: httpx.AsyncClient, team: TeamHandle
) -> None:
    pipeline = await default_pipeline(client, team)
    won = pipeline["stages"][3]  # type: ignore[index]
    deal = await create_deal(client, team, crm_pipeline_id=pipeline["id"], crm_stage_id=won["id"])
    assert deal["stage"] == {"id": won["id"], "name": "Won"}


async def test_pipeline_and_stage_names_are_matched_case_insensitively(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    pipeline_id, stage_ids = await add_pipeline(db, team.id, "Renewals", ["Due", "Renewed"])
    deal = await create_deal(client, team, crm_pipeline_name="RENEWALS", crm_stage_name="renewed")
    assert (deal["crm_pipeline_id"], deal["crm_stage_id"]) == (pipeline_id, stage_ids[1])


async def test_stage_name_alone_prefers_the_default_pipeline(
    client: httpx.AsyncClient, db: AsyncEngine, team: TeamHandle
) -> None:
    await add_pipeline(db, team.id, "Renewals", ["New", "Renewed"])
    pipeline = await default_pipeline(client, team)
    deal = await create_deal(client, team, crm_stage_name="new")
    assert deal["pipeline"] == {"id": pipeline["id"], "name": "Sales"}


@dataclass(frozen=True)
class Ids:
    own_pipeline: int
    own_other_stage: int
    foreign_pipeline: int
    foreign_stage: int


@pytest.mark.parametrize(
    ("make_body", "field"),
    [
        (lambda ids: {"crm_pipeline_id": ids.foreign_pipeline}, "crm_pipeline_id"),
        (lambda ids: {"crm_stage_id": ids.foreign_stage}, "crm_stage_id"),
        (lambda ids: {"crm_pipeline_id": 2_000_000}, "crm_pipeline_id"),
        (lambda ids: {"crm_stage_id": 2_000_000}, "crm_stage_id"),
        (lambda ids: {"crm_pipeline_name": "Theirs"}, "crm_pipeline_id"),
        (lambda ids: {"crm_stage_name": "Theirs only"}, "crm_stage_id"),
        (
            lambda ids: {"crm_pipeline_id": ids.own_pipeline, "crm_stage_id": ids.own_other_stage},
            "crm_stage_id",
        ),
    ],
    ids=[
        "foreign-pipeline",
        "foreign-stage",
        "unknown-pipeline",
        "unknown-stage",
        "foreign-pipeline-name",
        "foreign-stage-name",
        "stage-of-another-pipeline",
    ],
)
async def test_pipeline_or_stage_that_is_not_the_teams_is_422_and_writes_nothing(
    client: httpx.AsyncClient,
    db: AsyncEngine,
    team: TeamHandle,
    other_team: TeamHandle,
    make_body: Callable[[Ids], dict[str, object]],
    field: str,
) -> None:
    foreign_pipeline, foreign_stages = await add_pipeline(
        db, other_team.id, "Theirs", ["Theirs only"]
    )
    _, own_other_stages = await add_pipeline(db, team.id, "Renewals", ["Due"])
    own = await default_pipeline(client, team)
    ids = Ids(own["id"], own_other_stages[0], foreign_pipeline, foreign_stages[0])  # type: ignore[arg-type]
    before = await row_counts(db)
    response = await client.post(
        "/api/v3.1/deals", json={"name": "Deal", **make_body(ids)}, headers=team.auth
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", field]
    assert await row_counts(db) == before
