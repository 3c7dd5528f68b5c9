from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from crm_service.database import Base, UTCDateTime, utcnow


class Team(Base):
    """A tenant. ``external_company_id`` is the id the chat inbox knows the company by.

    ``caller_version`` is bumped by the database's own triggers (migration 0004) on every
    insert, update or delete of the team's ``team_features``, ``pipelines`` or
    ``stages`` rows: what a token's caller is read from beyond its token and team rows.
    The deal create's fast path writes with a remembered caller only while it holds."""

    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    external_company_id: Mapped[str] = mapped_column(String(255), unique=True)
    api_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    ticket_sequence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    caller_version: Mapped[int] = mapped_column(BigInteger, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CompanyToken(Base):
    """A bearer token of a team; only its SHA-256 is stored."""

    __tablename__ = "company_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    sso_id: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TeamFeature(Base):
    __tablename__ = "team_features"

    team_id: Mapped[int] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class OmnichannelLink(Base):
    """Where a team's events go, how its room links are built, and the credentials used.

    The signing secret and the API token must be usable, so they are stored as given;
    they never appear in a response or a log line.
    """

    __tablename__ = "omnichannel_links"

    team_id: Mapped[int] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    )
    base_url: Mapped[str] = mapped_column(String(2048))
    public_url: Mapped[str] = mapped_column(String(2048))
    webhook_secret: Mapped[str] = mapped_column(Text)
    previous_webhook_secret: Mapped[str | None] = mapped_column(Text, default=None)
    secret_rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    api_token: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
