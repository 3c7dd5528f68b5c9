"""Alembic environment of the CRM database (SQLite or PostgreSQL, async drivers)."""

from crm_service.models import Base
from crm_service.settings import Settings
from service_kit import alembic_env

alembic_env.run(Base.metadata, default_url=lambda: Settings().database_url)
