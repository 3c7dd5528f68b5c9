from __future__ import annotations

from decimal import Decimal

from sqlalchemy import ForeignKey, Integer, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from crm_service.database import Base
from crm_service.records.models import RecordColumns


class Deal(RecordColumns, Base):
    __tablename__ = "deals"

    slug: Mapped[str] = mapped_column(String(64), unique=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id"), index=True)
    stage_id: Mapped[int] = mapped_column(ForeignKey("stages.id"), index=True)
    size: Mapped[Decimal | None] = mapped_column(Numeric(18, 2), default=None)
    status: Mapped[str] = mapped_column(String(16), default="open")
    crm_source_id: Mapped[int | None] = mapped_column(Integer, default=None)


class DealContact(Base):
    __tablename__ = "deal_contacts"

    deal_id: Mapped[int] = mapped_column(
        ForeignKey("deals.id", ondelete="CASCADE"), primary_key=True
    )
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
