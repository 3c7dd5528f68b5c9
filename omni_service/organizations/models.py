from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from omni_service.database import Base, UTCDateTime, utcnow


class Organization(Base):
    """A tenant. ``company_id`` is the CRM's external company id, which events carry.

    The webhook secret must be usable to verify, so it is stored as given; the API token is
    only needed to compare, so only its SHA-256 is stored.
    """

    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    company_id: Mapped[str] = mapped_column(String(255), unique=True)
    api_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    webhook_secret: Mapped[str] = mapped_column(Text)
    previous_webhook_secret: Mapped[str | None] = mapped_column(Text, default=None)
    secret_rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def verifying_secrets(self, now: datetime, grace: timedelta) -> list[str]:
        """The current secret, plus the previous one while its grace period lasts."""
        secrets = [self.webhook_secret]
        if (
            self.previous_webhook_secret is not None
            and self.secret_rotated_at is not None
            and now - self.secret_rotated_at <= grace
        ):
            secrets.append(self.previous_webhook_secret)
        return secrets
