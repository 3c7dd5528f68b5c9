from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from omni_service.database import Base, UTCDateTime, utcnow

ROOM_ID_MAX_LENGTH = 255


class SenderType(StrEnum):
    CUSTOMER = "customer"
    AGENT = "agent"
    BOT = "bot"


class Room(Base):
    """A room an organization's CRM records point at.

    Its row is the lock that serialises every preview change of one room (see
    ``previews.service``): concurrent events for the room wait on it in turn.
    """

    __tablename__ = "rooms"
    __table_args__ = (UniqueConstraint("organization_id", "room_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    room_id: Mapped[str] = mapped_column(String(ROOM_ID_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        CheckConstraint("sender_type IN ('customer', 'agent', 'bot')", name="sender_type"),
        # History pages are read newest first within one organization's room.
        Index(
            "ix_messages_organization_id_room_id_created_at",
            "organization_id",
            "room_id",
            "created_at",
            "id",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    room_id: Mapped[str] = mapped_column(String(ROOM_ID_MAX_LENGTH))
    sender: Mapped[str] = mapped_column(String(255))
    sender_type: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
