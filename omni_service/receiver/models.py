from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from omni_service.database import Base, UTCDateTime, utcnow

WEBHOOK_ID_MAX_LENGTH = 255


class Outcome(StrEnum):
    APPLIED = "applied"
    IGNORED = "ignored"
    DUPLICATE = "duplicate"


class ReceivedEvent(Base):
    """Every webhook id received, written in the transaction that applies the event.

    The unique pair is the de-duplication: a resend (retry, replay, a worker killed
    mid-send) finds its id taken and changes nothing. It is scoped by organization so
    one tenant's ids can never shadow another's.
    """

    __tablename__ = "received_events"
    __table_args__ = (
        UniqueConstraint("organization_id", "webhook_id"),
        CheckConstraint("outcome IN ('applied', 'ignored')", name="outcome"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    webhook_id: Mapped[str] = mapped_column(String(WEBHOOK_ID_MAX_LENGTH))
    event_type: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
