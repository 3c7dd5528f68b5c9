"""Columns and constraints that deals and tickets share: tenant, room, creator, version."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from crm_service.database import UTCDateTime, utcnow


class RecordColumns:
    """Mixed into :class:`Deal` and :class:`Ticket`.

    ``version`` starts at 1 and is bumped by every change to a preview field and by the
    delete; it is what receivers order a record's events by.
    """

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    channel_integration_room_id: Mapped[str | None] = mapped_column(String(255), default=None)
    creator_flag: Mapped[str | None] = mapped_column(String(20), default=None)
    created_by: Mapped[str] = mapped_column(String(255))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
