"""One settings object for the CRM API and worker, read from the environment once.

Names are the ones DESIGN.md §8 fixes; every one has a working default for the embedded
mode (SQLite files under ``./var`` and a SQLite-backed Celery broker, no server needed).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_RETRY_SCHEDULE = (5, 30, 120, 600, 1800, 3600, 10800, 21600)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CRM_", env_file=".env", extra="ignore", populate_by_name=True
    )

    database_url: str = "sqlite+aiosqlite:///./var/crm.db"
    admin_key: str = "dev-crm-admin-key"
    public_url: str = "http://127.0.0.1:8000"
    token_ttl_seconds: int = Field(default=86_400, gt=0)
    webhook_retry_schedule: Annotated[tuple[float, ...], NoDecode] = DEFAULT_RETRY_SCHEDULE
    outbox_sweep_seconds: float = Field(default=30.0, gt=0)
    max_body_bytes: int = 1024 * 1024
    idempotency_ttl_seconds: int = 24 * 3600
    webhook_timeout_seconds: float = 10.0
    omni_timeout_seconds: float = 5.0
    note_retention_days: int = Field(default=365, gt=0)
    secret_rotation_grace_seconds: int = 24 * 3600
    # Prometheus endpoint of a worker (its pool processes' counts need PROMETHEUS_MULTIPROC_DIR).
    worker_metrics_port: int | None = Field(default=None, gt=0, le=65535)

    celery_broker_url: str = Field(
        default="sqla+sqlite:///./var/celery-broker.db",
        validation_alias=AliasChoices("CELERY_BROKER_URL", "CRM_CELERY_BROKER_URL"),
    )
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "CRM_REDIS_URL")
    )
    omni_room_url_template: str = Field(
        default="{omni_public_url}/inbox/rooms/{room_id}",
        validation_alias=AliasChoices("OMNI_ROOM_URL_TEMPLATE", "CRM_OMNI_ROOM_URL_TEMPLATE"),
    )

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _parse_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",") if part.strip()]
            return tuple(float(part) for part in parts)
        if isinstance(value, (int, float)):
            return (float(value),)
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _non_negative(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(delay < 0 for delay in value):
            raise ValueError("retry delays must be >= 0 seconds")
        return value

    @field_validator("redis_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value


@lru_cache
def get_settings() -> Settings:
    return Settings()
