"""Throw-away databases for tests: one migrated template per schema and test session,
one fresh copy of it per test (``CREATE DATABASE ... TEMPLATE``), dropped afterwards.

Every test gets its own data, tests run in any order, and concurrency tests get real
separate connections to a real PostgreSQL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg2
from alembic import command
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from service_kit.migrate import alembic_config

ROOT = Path(__file__).resolve().parents[2]
POSTGRES_DSN = os.environ.get("TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin_connection() -> psycopg2.extensions.connection:
    connection = psycopg2.connect(POSTGRES_DSN)
    connection.autocommit = True
    return connection


def async_url(database: str) -> str:
    base = POSTGRES_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{database}"


def migrate(section: str, url: str) -> None:
    command.upgrade(alembic_config(section, url), "head")


def create_template(section: str) -> str:
    """A migrated database to copy from; its name is unique to this test process."""
    name = f"tpl_{section}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    connection = _admin_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()
    migrate(section, async_url(name))
    return name


def drop_database(name: str) -> None:
    connection = _admin_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        connection.close()


@contextmanager
def database_from(template: str) -> Iterator[str]:
    """Yield the async URL of a fresh copy of ``template``; drop it afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    connection = _admin_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        connection.close()
    try:
        yield async_url(name)
    finally:
        drop_database(name)


@contextmanager
def sent_statements(engine: AsyncEngine) -> Iterator[list[tuple[str, str | None]]]:
    """Every statement ``engine`` sends while the block runs, with the isolation level its
    connection was set to (``None``: the engine's own, a transaction)."""
    sent: list[tuple[str, str | None]] = []

    def record(connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append((statement, connection.get_execution_options().get("isolation_level")))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
