"""Property: any arrival order of a room's events, with duplicates, ends in the previews
that in-order delivery gives (DESIGN.md §4 "Ordering").

Runs the preview service directly on one PostgreSQL database, emptied between examples,
so that a hundred scenarios stay fast; duplicates go straight to the service (not through
the webhook-id de-duplication), which makes the property stronger.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from omni_service.database import create_engine, session_factory
from omni_service.organizations import service as organizations_service
from omni_service.previews import service as previews_service
from omni_service.previews.models import DealPreview, TicketPreview
from omni_service.rooms.models import Room
from shared_contracts.events import RecordKind
from shared_contracts.signatures import generate_secret
from tests.omni.factories import T0, deal, deal_deleted, ticket, ticket_deleted

COMPANY = "company-a"
ROOMS = ("room-1", "room-2")


@dataclass(frozen=True)
class Record:
    kind: RecordKind
    record_id: int
    room_id: str
    # Few distinct values, so equal creation times (decided by id) come up often.
    created_offset: int
    updates: int
    deleted: bool

    def events(self) -> list[Event]:
        versions = range(1, self.updates + 2)
        states = [Event(self, version, deleted=False) for version in versions]
        if self.deleted:
            return [*states, Event(self, self.updates + 2, deleted=True)]
        return states


@dataclass(frozen=True)
class Event:
    record: Record
    version: int
    deleted: bool

    def payload(self) -> Any:
        record = self.record
        common: dict[str, Any] = {
            "company_id": COMPANY,
            "room_id": record.room_id,
            "version": self.version,
            "created_at": T0 + timedelta(seconds=record.created_offset),
        }
        build: Callable[..., Any]
        if record.kind is RecordKind.DEAL:
            build = deal_deleted if self.deleted else deal
        else:
            build = ticket_deleted if self.deleted else ticket
        return build(record.record_id, **common)


@st.composite
def room_histories(draw: st.DrawFn) -> list[Record]:
    count = draw(st.integers(min_value=1, max_value=4))
    return [
        Record(
            kind=draw(st.sampled_from(list(RecordKind))),
            record_id=record_id,
            room_id=draw(st.sampled_from(ROOMS)),
            created_offset=draw(st.integers(min_value=0, max_value=2)),
            updates=draw(st.integers(min_value=0, max_value=2)),
            deleted=draw(st.booleans()),
        )
        for record_id in range(1, count + 1)
    ]


def in_order(records: list[Record]) -> list[Event]:
    """One delivery the CRM could have made in order: records by creation, each in versions."""
    ordered = sorted(records, key=lambda record: (record.created_offset, record.record_id))
    return [event for record in ordered for event in record.events()]


def expected_cards(records: list[Record]) -> dict[tuple[str, RecordKind], tuple[int, int] | None]:
    """The rule stated plainly: the newest record of the room and kind, unless deleted."""
    expected: dict[tuple[str, RecordKind], tuple[int, int] | None] = {}
    for room_id in ROOMS:
        for kind in RecordKind:
            seen = [r for r in records if (r.room_id, r.kind) == (room_id, kind)]
            newest = max(seen, key=lambda r: (r.created_offset, r.record_id), default=None)
            if newest is None or newest.deleted:
                expected[(room_id, kind)] = None
            else:
                expected[(room_id, kind)] = (newest.record_id, newest.updates + 1)
    return expected


class Scenario:
    def __init__(self, engine: AsyncEngine, organization_id: int) -> None:
        self.factory: async_sessionmaker[AsyncSession] = session_factory(engine)
        self.organization_id = organization_id

    async def deliver(self, events: list[Event]) -> dict[str, Any]:
        async with self.factory() as session:
            for model in (DealPreview, TicketPreview, Room):
                await session.execute(delete(model))
            await session.commit()
        for event in events:
            # One transaction per event, as one webhook request would be.
            async with self.factory() as session:
                await previews_service.apply_event(
                    session, self.organization_id, event.record.kind, event.payload(), now=T0
                )
                await session.commit()
        async with self.factory() as session:
            return {
                room_id: (
                    await previews_service.room_preview(session, self.organization_id, room_id)
                ).model_dump(mode="json")
                for room_id in ROOMS
            }


async def _prepare(url: str) -> tuple[AsyncEngine, int]:
    engine = create_engine(url)
    async with session_factory(engine)() as session:
        organization, _token = await organizations_service.create(
            session, name="Org", company_id=COMPANY, webhook_secret=generate_secret()
        )
        await session.commit()
    return engine, organization.id


def test_any_delivery_order_with_duplicates_ends_like_in_order_delivery(
    omni_database_url: str,
) -> None:
    with asyncio.Runner() as runner:
        engine, organization_id = runner.run(_prepare(omni_database_url))
        scenario = Scenario(engine, organization_id)

        @settings(
            max_examples=100,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(records=room_histories(), data=st.data())
        def check(records: list[Record], data: st.DataObject) -> None:
            events = in_order(records)
            duplicates = data.draw(st.lists(st.sampled_from(events), max_size=4), "duplicates")
            arrival = data.draw(st.permutations(events + duplicates), "arrival order")

            expected = runner.run(scenario.deliver(events))
            actual = runner.run(scenario.deliver(arrival))

            assert actual == expected
            shown = {
                (room_id, kind): (
                    (card["id"], card["version"])
                    if (card := actual[room_id][kind.value]) is not None
                    else None
                )
                for room_id in ROOMS
                for kind in RecordKind
            }
            assert shown == expected_cards(records)

        try:
            check()
        finally:
            runner.run(engine.dispose())
