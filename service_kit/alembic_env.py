"""The Alembic environment both migration trees run (SQLite or PostgreSQL, async drivers).

Call :func:`run` from a tree's ``env.py``; it uses Alembic's ``context`` of the command
being run, so it only works there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from sqlalchemy import Column, MetaData
from sqlalchemy.engine import Connection

from service_kit.database import UTCDateTime, create_engine


def run(metadata: MetaData, default_url: Callable[[], str]) -> None:
    """Migrate (or autogenerate against) ``metadata``.

    The URL comes from ``-x url=...``, else ``sqlalchemy.url`` of the ini section, else
    ``default_url()`` (the service's settings, read only when needed).
    """
    config = context.config
    if config.config_file_name is not None and config.attributes.get("configure_logger", True):
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or config.get_main_option("sqlalchemy.url")
        or default_url()
    )
    if context.is_offline_mode():
        _run_offline(metadata, url)
    else:
        asyncio.run(_run_online(metadata, url))


def _run_offline(metadata: MetaData, url: str) -> None:
    context.configure(
        url=url,
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    """Render our UTC column type as the plain type it stores."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


async def _run_online(metadata: MetaData, url: str) -> None:
    engine = create_engine(url)
    async with engine.connect() as connection:
        await connection.run_sync(_migrate, metadata)
    await engine.dispose()


def expression_index_names(metadata: MetaData) -> set[str]:
    """The names of the models' indexes that have an expression among their elements.

    Neither database gives such an index back in a form autogenerate can compare: SQLite
    does not reflect its expressions at all, and PostgreSQL answers with its own deparsed
    text (casts, ``ELSE NULL``, line breaks), which never equals the models' text. Alembic
    would report a change on every run, so these indexes are left out of the comparison
    and each one's definition is tested against both databases by a test of its own
    (``tests/crm/test_migrations.py``).
    """
    return {
        str(index.name)
        for table in metadata.tables.values()
        for index in table.indexes
        if any(not isinstance(element, Column) for element in index.expressions)
    }


def _migrate(connection: Connection, metadata: MetaData) -> None:
    uncompared = expression_index_names(metadata)

    def include_object(
        obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
    ) -> bool:
        return not (type_ == "index" and name in uncompared)

    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=_render_item,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()
