"""One row per CRM record a room has seen: its latest display state and its place in
the room (``active``, ``replaced`` by a newer record, or ``deleted``).

Deleted and replaced rows are kept on purpose: "newest record of the room" is decided
against every record the room has seen, so a late event of an older or deleted record
can never bring it back (DESIGN.md §4, "Ordering").
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from omni_service.database import Base, UTCDateTime, utcnow
from omni_service.rooms.models import ROOM_ID_MAX_LENGTH
from shared_contracts.events import DealData, TicketData

ACTIVE_ONLY = "state = 'active'"


class PreviewState(StrEnum):
    ACTIVE = "active"
    REPLACED = "replaced"
    DELETED = "deleted"


class PreviewColumns:
    """Columns, constraints and behaviour that deal and ticket previews share."""

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    room_id: Mapped[str] = mapped_column(String(ROOM_ID_MAX_LENGTH))
    record_id: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    # The CRM's creation time: with ``record_id`` it orders the records of a room.
    crm_created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Display fields are null only on a tombstone whose delete arrived before any state.
    name: Mapped[str | None] = mapped_column(String(255), default=None)
    status: Mapped[str | None] = mapped_column(String(16), default=None)
    creator_flag: Mapped[str | None] = mapped_column(String(20), default=None)
    creator_name: Mapped[str | None] = mapped_column(String(255), default=None)
    external_url: Mapped[str | None] = mapped_column(String(2048), default=None)
    crm_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        table = cls.__tablename__  # type: ignore[attr-defined]
        return (
            UniqueConstraint("organization_id", "record_id"),
            CheckConstraint("state IN ('active', 'replaced', 'deleted')", name="state"),
            CheckConstraint(
                "state = 'deleted' OR (name IS NOT NULL AND status IS NOT NULL"
                " AND external_url IS NOT NULL AND crm_updated_at IS NOT NULL)",
                name="display_fields",
            ),
            # The rule "one active preview per room and kind", kept by the database.
            Index(
                f"uq_{table}_active_room",
                "organization_id",
                "room_id",
                unique=True,
                postgresql_where=text(ACTIVE_ONLY),
                sqlite_where=text(ACTIVE_ONLY),
            ),
            # Finds the room's newest record: ORDER BY crm_created_at DESC, record_id DESC.
            Index(
                f"ix_{table}_room_order",
                "organization_id",
                "room_id",
                "crm_created_at",
                "record_id",
            ),
        )

    def _show_common(self, data: DealData | TicketData) -> None:
        self.version = data.version
        self.name = data.name
        self.status = data.status
        self.creator_flag = data.creator_flag.value if data.creator_flag else None
        self.creator_name = data.creator_name
        self.external_url = data.external_url
        self.crm_updated_at = data.updated_at


class DealPreview(PreviewColumns, Base):
    __tablename__ = "deal_previews"

    slug: Mapped[str | None] = mapped_column(String(64), default=None)
    stage_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    stage_name: Mapped[str | None] = mapped_column(String(255), default=None)
    pipeline_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    pipeline_name: Mapped[str | None] = mapped_column(String(255), default=None)
    size: Mapped[Decimal | None] = mapped_column(Numeric(18, 2), default=None)

    def show(self, data: DealData | TicketData) -> None:
        """Take the display state an event carries (create and update alike)."""
        assert isinstance(data, DealData)
        self._show_common(data)
        self.slug = data.slug
        self.stage_id = data.stage.id
        self.stage_name = data.stage.name
        self.pipeline_id = data.pipeline.id
        self.pipeline_name = data.pipeline.name
        self.size = data.size


class TicketPreview(PreviewColumns, Base):
    __tablename__ = "ticket_previews"

    unique_ticket_id: Mapped[str | None] = mapped_column(String(64), default=None)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    priority: Mapped[str | None] = mapped_column(String(16), default=None)

    def show(self, data: DealData | TicketData) -> None:
        """Take the display state an event carries (create and update alike)."""
        assert isinstance(data, TicketData)
        self._show_common(data)
        self.unique_ticket_id = data.unique_ticket_id
        self.description = data.description
        self.priority = data.priority
