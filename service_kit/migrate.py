"""Where the migration trees live, for code that migrates (the CLI, tests, the demo).

The trees ship inside the packages (``crm_service/migrations``, ``omni_service/migrations``)
so that an installed wheel can migrate from any folder; ``alembic.ini`` at the repository
root names the same locations for the ``alembic -n crm|omni`` command line.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config

SCRIPT_LOCATIONS = {"crm": "crm_service:migrations", "omni": "omni_service:migrations"}


def alembic_config(section: str, url: str | None = None) -> Config:
    """An Alembic config for ``section`` ("crm" or "omni") that needs no ini file; the URL
    defaults to the service's settings (as with ``alembic -n``)."""
    config = Config(ini_section=section)
    config.set_main_option("script_location", SCRIPT_LOCATIONS[section])
    if url:
        config.set_main_option("sqlalchemy.url", url)
    return config


def upgrade(section: str, url: str | None = None) -> None:
    """Bring the ``section`` database to the current schema."""
    command.upgrade(alembic_config(section, url), "head")
