"""Settings come from the environment names DESIGN.md §8 fixes, and every one has a
working default for the embedded mode (SQLite, SQLite broker, no Redis)."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from crm_service.settings import DEFAULT_RETRY_SCHEDULE, Settings

SERVICE_PREFIXES = ("CRM_", "CELERY_", "OMNI_")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting may leak in from the shell that runs the tests."""
    for name in list(os.environ):
        if name.startswith(SERVICE_PREFIXES) or name == "REDIS_URL":
            monkeypatch.delenv(name)


def from_env() -> Settings:
    return Settings(_env_file=None)  # type: ignore[call-arg]


def test_defaults_are_the_embedded_mode() -> None:
    settings = from_env()
    assert settings.database_url == "sqlite+aiosqlite:///./var/crm.db"
    assert settings.celery_broker_url == "sqla+sqlite:///./var/celery-broker.db"
    assert settings.redis_url is None
    assert settings.webhook_retry_schedule == DEFAULT_RETRY_SCHEDULE
    assert settings.token_ttl_seconds > 0
    assert settings.max_body_bytes == 1024 * 1024


def test_every_design_env_name_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "CRM_DATABASE_URL": "postgresql+asyncpg://crm@db:5432/crm",
        "CELERY_BROKER_URL": "redis://cache:6379/1",
        "REDIS_URL": "redis://cache:6379/0",
        "CRM_ADMIN_KEY": "operator-key",
        "CRM_PUBLIC_URL": "https://crm.example.com",
        "OMNI_ROOM_URL_TEMPLATE": "{omni_public_url}/rooms/{room_id}",
        "CRM_WEBHOOK_RETRY_SCHEDULE": "1, 1,2",
        "CRM_OUTBOX_SWEEP_SECONDS": "7.5",
        "CRM_TOKEN_TTL_SECONDS": "120",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = from_env()
    assert (
        settings.database_url,
        settings.celery_broker_url,
        settings.redis_url,
        settings.admin_key,
        settings.public_url,
        settings.omni_room_url_template,
        settings.webhook_retry_schedule,
        settings.outbox_sweep_seconds,
        settings.token_ttl_seconds,
    ) == (
        "postgresql+asyncpg://crm@db:5432/crm",
        "redis://cache:6379/1",
        "redis://cache:6379/0",
        "operator-key",
        "https://crm.example.com",
        "{omni_public_url}/rooms/{room_id}",
        (1.0, 1.0, 2.0),
        7.5,
        120,
    )


def test_a_blank_redis_url_means_no_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "")
    assert from_env().redis_url is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CRM_WEBHOOK_RETRY_SCHEDULE", "5,-1"),
        ("CRM_WEBHOOK_RETRY_SCHEDULE", "5,soon"),
        ("CRM_TOKEN_TTL_SECONDS", "0"),
        ("CRM_OUTBOX_SWEEP_SECONDS", "-3"),
    ],
)
def test_a_nonsensical_value_is_refused_at_startup(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        from_env()
