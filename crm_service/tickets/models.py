from __future__ import annotations

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm_service.database import Base
from crm_service.records.models import RecordColumns


class Ticket(RecordColumns, Base):
    __tablename__ = "tickets"
    __table_args__ = (UniqueConstraint("team_id", "unique_ticket_id"),)

    unique_ticket_id: Mapped[str] = mapped_column(String(32))
    description: Mapped[str | None] = mapped_column(Text, default=None)
    status: Mapped[str] = mapped_column(String(16), default="open")
    priority: Mapped[str] = mapped_column(String(16), default="medium")


class TicketContact(Base):
    __tablename__ = "ticket_contacts"

    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True
    )
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
