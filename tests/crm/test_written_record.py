"""The record a PostgreSQL create hands back (``one_statement.as_written``): the model
instance of the row written, as the ORM would have loaded it, built without the ORM's
constructor."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import inspect

from crm_service.deals.models import Deal
from crm_service.records import one_statement
from crm_service.tickets.models import Ticket

MOMENT = datetime(2026, 12, 4, 9, 30, 1, 123456, tzinfo=UTC)

ROWS: dict[type[Any], dict[str, Any]] = {
    Deal: {
        "id": 41,
        "team_id": 7,
        "name": "Deal from bot",
        "channel_integration_room_id": "room-1",
        "creator_flag": "bot",
        "created_by": "sso-1",
        "created_at": MOMENT,
        "updated_at": MOMENT,
        "slug": "0f" * 16,
        "pipeline_id": 3,
        "stage_id": 5,
        "size": Decimal("1500000.00"),
    },
    Ticket: {
        "id": 42,
        "team_id": 7,
        "name": "Ticket from AI",
        "creator_flag": "ai",
        "created_by": "sso-2",
        "created_at": MOMENT,
        "updated_at": MOMENT,
        "unique_ticket_id": "T-0001",
        "priority": "high",
    },
}


@pytest.mark.parametrize("model", list(ROWS), ids=lambda model: model.__name__)
def test_every_column_is_the_row_written_with_the_constructors_defaults(model: type[Any]) -> None:
    table = model.__table__
    row = one_statement.with_defaults(table, ROWS[model])
    record = one_statement.as_written(model, row)
    constructed = model(**row)  # what the ORM constructor gives for the same row
    assert isinstance(record, model)
    for column in table.columns:
        assert getattr(record, column.key) == getattr(constructed, column.key), column.key
        assert getattr(record, column.key) == row.get(column.name), column.key


@pytest.mark.parametrize("model", list(ROWS), ids=lambda model: model.__name__)
def test_it_is_a_clean_transient_instance(model: type[Any]) -> None:
    record = one_statement.as_written(
        model, one_statement.with_defaults(model.__table__, ROWS[model])
    )
    state = inspect(record)
    assert state.transient
    assert not state.modified
    assert not state.unloaded  # reading any column never asks a session for it


def test_a_column_the_row_leaves_out_reads_none() -> None:
    row = {key: value for key, value in ROWS[Deal].items() if key != "size"}
    assert one_statement.as_written(Deal, row).size is None
