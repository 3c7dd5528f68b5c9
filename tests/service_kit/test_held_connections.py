"""Held asyncpg connections (``service_kit/held_connections.py``) against a real
PostgreSQL: bounded, reused, and never handing out a connection in an unknown state."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from service_kit.database import libpq_dsn
from service_kit.held_connections import HeldConnections


@pytest.fixture
def dsn(omni_database_url: str) -> str:
    dsn = libpq_dsn(omni_database_url)
    assert dsn is not None
    return dsn


@pytest.fixture
async def admin(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(dsn)
    yield connection
    await connection.close()


@pytest.fixture
async def held_by(dsn: str) -> AsyncIterator[Callable[[int], HeldConnections]]:
    """``held_by(size)``: held connections to the test database, closed after the test."""
    made: list[HeldConnections] = []

    def make(size: int) -> HeldConnections:
        made.append(HeldConnections(dsn, size=size))
        return made[-1]

    yield make
    for held in made:
        await held.close()


async def backends(admin: asyncpg.Connection, tag: str) -> list[int]:
    """The pids of the server's backends whose last query carried ``tag``."""
    rows = await admin.fetch(
        "SELECT pid FROM pg_stat_activity WHERE query LIKE $1 AND pid <> pg_backend_pid()",
        f"%{tag}%",
    )
    return [row["pid"] for row in rows]


async def test_concurrent_calls_share_at_most_size_connections(
    held_by: Callable[[int], HeldConnections], admin: asyncpg.Connection
) -> None:
    held = held_by(2)
    answers = await asyncio.gather(
        *(held.fetchval("SELECT $1::int FROM pg_sleep(0.05) /* bounded */", n) for n in range(8)),
    )
    assert answers == list(range(8))
    assert held.opened == 2
    assert len(await backends(admin, "bounded")) == 2
    # Reused afterwards: no new connection for the next calls.
    for n in range(5):
        assert await held.fetchval("SELECT $1::int /* bounded */", n) == n
    assert held.opened == 2


async def test_a_server_error_keeps_the_connection(
    held_by: Callable[[int], HeldConnections],
) -> None:
    held = held_by(1)
    first = await held.fetchval("SELECT pg_backend_pid()")
    with pytest.raises(asyncpg.DivisionByZeroError):
        await held.fetchval("SELECT 1 / 0")
    assert await held.fetchval("SELECT pg_backend_pid()") == first


async def test_a_call_cut_off_midway_discards_its_connection(
    held_by: Callable[[int], HeldConnections],
) -> None:
    held = held_by(1)
    first = await held.fetchval("SELECT pg_backend_pid()")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await held.fetchval("SELECT pg_sleep(5)")
    assert held.opened == 0
    # The next caller gets a fresh connection, not the one left mid-query.
    assert await held.fetchval("SELECT pg_backend_pid()") != first
    assert held.opened == 1


async def test_a_waiter_gets_the_slot_of_a_discarded_connection(
    held_by: Callable[[int], HeldConnections],
) -> None:
    held = held_by(1)
    slow = asyncio.create_task(held.fetchval("SELECT pg_sleep(5)"))
    await asyncio.sleep(0.2)
    waiting = asyncio.create_task(held.fetchval("SELECT 7"))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    slow.cancel()
    async with asyncio.timeout(5):
        assert await waiting == 7
    with pytest.raises(asyncio.CancelledError):
        await slow
    assert held.opened == 1


async def test_a_connection_the_server_dropped_is_replaced(
    held_by: Callable[[int], HeldConnections], admin: asyncpg.Connection
) -> None:
    held = held_by(1)
    first = await held.fetchval("SELECT pg_backend_pid() /* dropped */")
    assert await admin.fetchval("SELECT pg_terminate_backend($1)", first)
    answers: list[int | BaseException] = []
    for _ in range(3):
        try:
            answers.append(await held.fetchval("SELECT pg_backend_pid()"))
        except Exception as error:  # asyncpg's error for a dropped link varies
            answers.append(error)
    # At most the call racing the drop fails; then a new backend answers.
    assert sum(isinstance(answer, BaseException) for answer in answers) <= 1
    assert isinstance(answers[-1], int) and answers[-1] != first
    assert held.opened == 1


async def test_closed_connections_refuse_calls_and_close_the_server_side(
    dsn: str, admin: asyncpg.Connection
) -> None:
    held = HeldConnections(dsn, size=3)
    await asyncio.gather(
        *(held.fetchval("SELECT 1 FROM pg_sleep(0.05) /* closing */") for _ in range(3))
    )
    assert len(await backends(admin, "closing")) == 3
    await held.close()
    async with asyncio.timeout(5):
        while await backends(admin, "closing"):  # noqa: ASYNC110 - polling the server
            await asyncio.sleep(0.05)
    with pytest.raises(RuntimeError, match="closed"):
        await held.fetchval("SELECT 1")
