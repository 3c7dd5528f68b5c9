from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm_service.database import Base, UTCDateTime, utcnow

HUB_CHANNEL_CHAT = "hub_channel_chat"


class Note(Base):
    """A timeline entry of a deal or a ticket. One chat note per (record, room)."""

    __tablename__ = "notes"
    __table_args__ = (
        UniqueConstraint("record_kind", "record_id", "type", "channel_room_id"),
        Index("ix_notes_team_id_record", "team_id", "record_kind", "record_id", "created_at"),
        Index("ix_notes_type_created_at", "type", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    record_kind: Mapped[str] = mapped_column(String(10))
    record_id: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(40))
    excerpt: Mapped[str | None] = mapped_column(Text, default=None)
    room_deeplink: Mapped[str | None] = mapped_column(String(2048), default=None)
    creator_flag: Mapped[str | None] = mapped_column(String(20), default=None)
    creator_name: Mapped[str | None] = mapped_column(String(255), default=None)
    channel_room_id: Mapped[str | None] = mapped_column(String(255), default=None)
    channel_organization_id: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
