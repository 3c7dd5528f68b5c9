"""The event catalog: the JSON Schema and the OpenAPI ``webhooks`` section describe the
six event types, and every event the CRM really emits matches them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_service.main import create_app
from shared_contracts.catalog import events_json_schema
from shared_contracts.events import EventType
from tests.crm.events.conftest import LinkedTeam, create_record, outbox_rows

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = events_json_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_the_schema_and_the_openapi_webhooks_list_the_six_types() -> None:
    schema = events_json_schema()
    listed = {
        schema["$defs"][ref["$ref"].rsplit("/", 1)[1]]["properties"]["type"]["const"]
        for ref in schema["oneOf"]
    }
    assert listed == {str(event_type) for event_type in EventType}

    document = create_app().openapi()
    assert document["openapi"].startswith("3.1")
    assert set(document["webhooks"]) == listed
    for name, item in document["webhooks"].items():
        operation = item["post"]
        headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}
        body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        component = document["components"]["schemas"][body.rsplit("/", 1)[1]]
        assert component["properties"]["type"]["const"] == name


async def test_every_event_the_crm_emits_matches_the_catalog(
    client: httpx.AsyncClient,
    linked_team: LinkedTeam,
    sessions: Sessions,
    validator: Draft202012Validator,
) -> None:
    for kind in ("deals", "tickets"):
        record = await create_record(client, linked_team, kind, channel_integration_room_id=kind)
        path = f"/api/v3.1/{kind}/{record['id']}"
        updated = await client.patch(path, json={"name": "renamed"}, headers=linked_team.auth)
        assert updated.status_code == 200, updated.text
        deleted = await client.delete(path, headers=linked_team.auth)
        assert deleted.status_code == 204, deleted.text

    bodies: list[dict[str, Any]] = [
        json.loads(row.body or "") for row in await outbox_rows(sessions, kind="webhook")
    ]
    assert {body["type"] for body in bodies} == {str(event_type) for event_type in EventType}
    for body in bodies:
        errors = [error.message for error in validator.iter_errors(body)]
        assert errors == [], (body["type"], errors)


def test_a_body_that_breaks_the_contract_does_not_match(
    validator: Draft202012Validator,
) -> None:
    body = {
        "type": "qontak.crm.deal.delete",
        "timestamp": "2026-11-27T21:05:29.123456Z",
        "data": {"company_id": "acme", "channel_integration_room_id": "r", "version": 2},
    }
    assert not validator.is_valid(body)  # no id, no created_at
    body["data"] |= {"id": 1, "created_at": "2026-11-27T21:05:29.123456Z"}
    assert validator.is_valid(body)
    assert not validator.is_valid({**body, "type": "qontak.crm.deal.archive"})


def test_the_cli_writes_the_same_schema(tmp_path: Path) -> None:
    target = tmp_path / "events.json"
    finished = subprocess.run(
        [sys.executable, "-m", "crm_service.cli", "events", "schema", "--output", str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    assert json.loads(target.read_text()) == events_json_schema()
    printed = subprocess.run(
        [sys.executable, "-m", "crm_service.cli", "events", "schema"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert json.loads(printed.stdout) == events_json_schema()
