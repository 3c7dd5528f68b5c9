"""Event types, payloads and the envelope that crosses the wire (DESIGN.md §4)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from shared_contracts.events import (
    Action,
    DealData,
    DealDeleteData,
    EventEnvelope,
    EventType,
    NamedRef,
    RecordKind,
    TicketData,
    build_envelope,
    event_type_for,
    split_event_type,
)

CREATED = datetime(2026, 11, 27, 21, 5, 29, 123456, tzinfo=UTC)


def deal() -> DealData:
    return DealData(
        id=7,
        slug="abc",
        company_id="company-1",
        channel_integration_room_id="room-1",
        name="Deal",
        stage=NamedRef(id=1, name="New"),
        pipeline=NamedRef(id=1, name="Sales"),
        size=Decimal("1500000.50"),
        status="open",
        creator_flag="bot",
        creator_name="Bot",
        external_url="https://crm.example.test/deals/7",
        created_at=CREATED,
        updated_at=CREATED,
        version=1,
    )


def test_the_six_event_types_are_the_contracts_names() -> None:
    assert sorted(EventType) == sorted(
        f"qontak.crm.{kind}.{action}"
        for kind in ("deal", "ticket")
        for action in ("create", "update", "delete")
    )


@pytest.mark.parametrize("event_type", list(EventType))
def test_event_types_split_into_kind_and_action_and_back(event_type: EventType) -> None:
    kind, action = split_event_type(event_type)
    assert event_type_for(kind, action) is event_type


def test_the_envelope_is_type_timestamp_and_data_with_microsecond_utc_times() -> None:
    body = json.loads(build_envelope(EventType.DEAL_CREATE, deal(), at=CREATED))
    assert body == {
        "type": "qontak.crm.deal.create",
        "timestamp": "2026-11-27T21:05:29.123456Z",
        "data": body["data"],
    }
    assert body["data"]["created_at"] == "2026-11-27T21:05:29.123456Z"
    assert body["data"]["size"] == 1500000.5
    assert body["data"]["stage"] == {"id": 1, "name": "New"}


def test_the_envelope_parses_back_to_the_payload_of_its_type() -> None:
    envelope = EventEnvelope.model_validate_json(build_envelope(EventType.DEAL_UPDATE, deal()))
    assert envelope.parsed_data() == deal()


def test_a_delete_payload_carries_identity_room_company_and_version() -> None:
    data = DealDeleteData(
        id=7,
        slug="abc",
        company_id="company-1",
        channel_integration_room_id="room-1",
        created_at=CREATED,
        version=3,
    )
    body = json.loads(build_envelope(EventType.DEAL_DELETE, data))
    assert set(body["data"]) == {
        "id",
        "slug",
        "company_id",
        "channel_integration_room_id",
        "created_at",
        "version",
    }


def test_a_ticket_payload_refuses_an_unknown_priority() -> None:
    with pytest.raises(ValueError, match="priority"):
        TicketData(
            id=1,
            unique_ticket_id="TCK-000001",
            company_id="company-1",
            channel_integration_room_id="room-1",
            name="Ticket",
            status="open",
            priority="whenever",
            creator_flag=None,
            creator_name=None,
            external_url="https://crm.example.test/tickets/1",
            created_at=CREATED,
            updated_at=CREATED,
            version=1,
        )


def test_record_kinds_and_actions_are_the_names_in_the_types() -> None:
    assert [str(kind) for kind in RecordKind] == ["deal", "ticket"]
    assert [str(action) for action in Action] == ["create", "update", "delete"]
