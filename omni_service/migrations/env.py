"""Alembic environment of the Omni database (SQLite or PostgreSQL, async drivers)."""

from omni_service.models import Base
from omni_service.settings import Settings
from service_kit import alembic_env

alembic_env.run(Base.metadata, default_url=lambda: Settings().database_url)
