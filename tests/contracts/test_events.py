"""Event types, payloads and the envelope that crosses the wire (DESIGN.md §4)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared_contracts.creators import CreatorFlag, creator_label, parse_creator_flag
from shared_contracts.events import (
    Action,
    DealData,
    DealDeleteData,
    EventEnvelope,
    EventType,
    NamedRef,
    Payload,
    RecordKind,
    TicketData,
    TicketDeleteData,
    build_envelope,
    event_type_for,
    format_timestamp,
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


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (CREATED, "2026-11-27T21:05:29.123456Z"),
        (CREATED.replace(microsecond=0), "2026-11-27T21:05:29.000000Z"),  # always six digits
        (CREATED.replace(tzinfo=None), "2026-11-27T21:05:29.123456Z"),  # naive is UTC
        (
            CREATED.astimezone(timezone(timedelta(hours=7))),  # another zone, same instant
            "2026-11-27T21:05:29.123456Z",
        ),
        (datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC), "0999-01-02T03:04:05.000006Z"),
    ],
)
def test_timestamps_are_rfc3339_utc_with_microseconds(moment: datetime, text: str) -> None:
    assert format_timestamp(moment) == text


def test_the_envelope_is_compact_utf8_json_of_the_dumped_payload() -> None:
    """One pass over the payload gives the bytes a dump and ``json.dumps`` would."""
    data = deal().model_copy(update={"name": 'Kopi "susu" — café ☕\n'})
    expected = json.dumps(
        {
            "type": "qontak.crm.deal.update",
            "timestamp": "2026-11-27T21:05:29.123456Z",
            "data": data.model_dump(mode="json"),
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )
    assert build_envelope(EventType.DEAL_UPDATE, data, at=CREATED) == expected


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


def ticket() -> TicketData:
    return TicketData(
        id=9,
        unique_ticket_id="TCK-000042",
        company_id="company-1",
        channel_integration_room_id="room-1",
        name="Ticket 🎫",
        description="Printer on fire",
        status="pending",
        priority="urgent",
        creator_flag=CreatorFlag.AGENTIC_AI,
        creator_name="AI",
        external_url="https://crm.example.test/tickets/9",
        created_at=CREATED,
        updated_at=CREATED,
        version=4,
    )


SAMPLES: dict[EventType, Payload] = {
    EventType.DEAL_CREATE: deal(),
    EventType.DEAL_UPDATE: deal().model_copy(update={"version": 2, "status": "won"}),
    EventType.DEAL_DELETE: DealDeleteData(
        id=7,
        slug="abc",
        company_id="company-1",
        channel_integration_room_id="room-1",
        created_at=CREATED,
        version=3,
    ),
    EventType.TICKET_CREATE: ticket(),
    EventType.TICKET_UPDATE: ticket().model_copy(update={"version": 5, "priority": "low"}),
    EventType.TICKET_DELETE: TicketDeleteData(
        id=9,
        unique_ticket_id="TCK-000042",
        company_id="company-1",
        channel_integration_room_id="room-1",
        created_at=CREATED,
        version=6,
    ),
}


@pytest.mark.parametrize("event_type", list(EventType))
def test_every_payload_model_round_trips_through_the_envelope(event_type: EventType) -> None:
    envelope = EventEnvelope.model_validate_json(build_envelope(event_type, SAMPLES[event_type]))
    assert envelope.type is event_type
    assert envelope.parsed_data() == SAMPLES[event_type]


@given(
    name=st.text(min_size=1, max_size=255),
    size=st.none() | st.decimals(min_value=0, max_value=Decimal("9999999999999.99"), places=2),
    # The CRM stamps its own times (now), so only this era matters.
    moment=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
    version=st.integers(min_value=1, max_value=2**31 - 1),
    flag=st.sampled_from([None, *CreatorFlag]),
)
def test_any_deal_state_the_api_accepts_round_trips_exactly(
    name: str, size: Decimal | None, moment: datetime, version: int, flag: CreatorFlag | None
) -> None:
    data = deal().model_copy(
        update={
            "name": name,
            "size": size,
            "created_at": moment,
            "updated_at": moment,
            "version": version,
            "creator_flag": flag,
            "creator_name": creator_label(flag),
        }
    )
    parsed = EventEnvelope.model_validate_json(
        build_envelope(EventType.DEAL_UPDATE, data)
    ).parsed_data()
    assert parsed == data


@pytest.mark.parametrize(
    ("raw", "flag"),
    [
        ("bot", CreatorFlag.BOT),
        (" BOT ", CreatorFlag.BOT),
        ("Agentic_AI", CreatorFlag.AGENTIC_AI),
        ("ai", None),
        ("", None),
        (None, None),
        (1, None),
        (["bot"], None),
    ],
)
def test_creator_flags_parse_case_insensitively_and_anything_else_is_none(
    raw: object, flag: CreatorFlag | None
) -> None:
    assert parse_creator_flag(raw) is flag


def test_creator_labels_are_bot_and_ai() -> None:
    assert [creator_label(flag) for flag in (*CreatorFlag, None)] == ["Bot", "AI", None]
