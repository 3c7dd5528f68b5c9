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
from sqlalchemy import Column, Index, MetaData
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


def _is_expression_index(obj: Any, name: str | None, metadata: MetaData) -> bool:
    """Whether ``obj`` is, or was reflected from, an index of the models with an expression.

    Neither database gives such an index back in a form autogenerate can compare: SQLite
    does not reflect its expressions at all, and PostgreSQL answers with its own deparsed
    text (casts, ``ELSE NULL``, line breaks), which never equals the models' text. Alembic
    would report a change on every run, so these indexes are left out of the comparison
    and each one's definition is tested against both databases by a test of its own
    (``tests/crm/test_migrations.py``).
    """
    if not isinstance(obj, Index) or obj.table is None:
        return False
    model = metadata.tables.get(obj.table.name)
    if model is None:
        return False
    return any(
        index.name == name and any(not isinstance(e, Column) for e in index.expressions)
        for index in model.indexes
    )


def _migrate(connection: Connection, metadata: MetaData) -> None:
    def include_object(
        obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
    ) -> bool:
        return not (type_ == "index" and _is_expression_index(obj, name, metadata))

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
