"""One settings object for the Omni API, read from the environment once.

Names are the ones DESIGN.md §8 fixes (``OMNI_`` prefix); every one has a working default
for the embedded mode (a SQLite file under ``./var``, no server needed).
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared_contracts.signatures import TOLERANCE_SECONDS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OMNI_", env_file=".env", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///./var/omni.db"
    admin_key: str = "dev-omni-admin-key"
    max_webhook_body_bytes: int = Field(default=256 * 1024, gt=0)
    # The Standard Webhooks verifier itself refuses anything beyond five minutes, so this
    # setting can only tighten the window, never widen it.
    webhook_tolerance_seconds: int = Field(default=TOLERANCE_SECONDS, gt=0, le=TOLERANCE_SECONDS)
    # After a secret rotation the previous secret keeps verifying for this long, so events
    # the CRM signed (or is retrying) with the old secret are not lost.
    secret_rotation_grace_seconds: int = Field(default=24 * 3600, ge=0)
    # The preview stream sends a heartbeat (and re-reads the preview) this often.
    stream_heartbeat_seconds: float = Field(default=15.0, gt=0)
    # Per-process caches (README "Omni caches"). A token or organization read from the
    # database is trusted for this long, so a revoked token or a secret changed behind
    # the API's back takes effect within it; 0 turns the cache off.
    organization_cache_seconds: float = Field(default=2.0, ge=0)
    organization_cache_entries: int = Field(default=10_000, ge=0)
    # The room-preview cache is invalidated by change notifications; this age bound only
    # caps the damage of a notification lost without the connection noticing. 0 = off.
    preview_cache_seconds: float = Field(default=5.0, ge=0)
    preview_cache_entries: int = Field(default=10_000, ge=0)


@lru_cache
def get_settings() -> Settings:
    return Settings()
