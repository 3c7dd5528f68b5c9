"""A few asyncpg connections held open for a hot path's autocommitted statements: Omni's
receiver (its one ``omni_receive_event`` call per event) and the CRM's deal create (the
caller lookup and the one ``WITH … INSERT``).

Such a statement runs outside any transaction, so it needs none of what a pooled
SQLAlchemy connection does around it (checkout and return bookkeeping, the
isolation-level switch, result processing, the greenlet hop): measured on this machine,
those cost about as much client CPU as the call itself. A held connection runs the
statement directly, prepared once per connection by asyncpg's statement cache.

Connections open lazily, up to ``size``; a caller beyond that waits for the next one
given back, first come first served. A connection that fails, or whose call is cut off
midway (a cancelled request, a timeout), is closed and never handed out again: only a
call that got its answer (or a server-side error, which leaves an autocommit connection
clean) returns its connection. The next caller opens a fresh one, so a restarted
server costs the events in flight at the time, not the process.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping
from typing import Any, ClassVar

import asyncpg
from sqlalchemy import ClauseElement
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect

log = logging.getLogger(__name__)

_DIALECT = asyncpg_dialect.dialect()  # type: ignore[no-untyped-call]

# Enough for one process's concurrent requests (each holds a connection for one round
# trip at a time), and what the bare receiver of the benchmark holds too.
DEFAULT_SIZE = 10


class HeldStatement:
    """A SQLAlchemy statement compiled once for asyncpg (``$n`` placeholders), to run on
    held connections with the parameters the session would have bound by name. Bound
    values written into the statement itself (a ``LIMIT 1``) are kept."""

    _compiled: ClassVar[dict[ClauseElement, HeldStatement]] = {}

    def __init__(self, statement: ClauseElement) -> None:
        compiled = statement.compile(dialect=_DIALECT)
        self.sql = compiled.string
        self._names: tuple[str, ...] = tuple(getattr(compiled, "positiontup", None) or ())
        self._given = compiled.params

    @classmethod
    def of(cls, statement: ClauseElement) -> HeldStatement:
        """Compiled on first use; ``statement`` is one built once and kept (a module's
        constant), so the cache stays as small as the code that builds statements."""
        held = cls._compiled.get(statement)
        if held is None:
            held = cls._compiled[statement] = cls(statement)
        return held

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        return [params[name] if name in params else self._given[name] for name in self._names]


class HeldConnections:
    def __init__(self, dsn: str, size: int = DEFAULT_SIZE) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._dsn = dsn
        self._size = size
        self._idle: deque[asyncpg.Connection] = deque()
        self._waiters: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        self._opened = 0  # open or opening, idle or in use
        self._closed = False

    @property
    def opened(self) -> int:
        return self._opened

    async def fetchval(self, query: str, *args: Any) -> Any:
        """The first column of the first row ``query`` returns, on a held connection."""
        row = await self.fetchrow(query, *args)
        return None if row is None else row[0]

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        """The first row ``query`` returns (None without one), on a held connection."""
        return await self._call("fetchrow", query, args)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        """Every row ``query`` returns, on a held connection."""
        rows: list[asyncpg.Record] = await self._call("fetch", query, args)
        return rows

    async def _call(self, method: str, query: str, args: tuple[Any, ...]) -> Any:
        connection = await self._acquire()
        try:
            value = await getattr(connection, method)(query, *args)
        except asyncpg.PostgresError:
            # The server refused the statement and answered: the connection is fine.
            self._release(connection)
            raise
        except BaseException:
            self._discard(connection)
            raise
        self._release(connection)
        return value

    async def close(self) -> None:
        """Close every idle connection; one in use is closed when it is given back."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(RuntimeError("the held connections are closed"))
        idle, self._idle = list(self._idle), deque()
        for connection in idle:
            self._opened -= 1
            await _close_quietly(connection)

    async def _acquire(self) -> asyncpg.Connection:
        if self._closed:
            raise RuntimeError("the held connections are closed")
        while self._idle:
            connection = self._idle.pop()  # the most recently used: warm, surely alive
            if not connection.is_closed():
                return connection
            self._opened -= 1
        if self._opened < self._size:
            return await self._open()
        waiter: asyncio.Future[asyncpg.Connection | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiters.append(waiter)
        try:
            handed = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Cancelled just after being handed a connection: pass it on.
                given = waiter.result()
                if given is not None:
                    self._release(given)
                else:
                    self._wake_one(None)
            else:
                waiter.cancel()
            raise
        # None: a slot was freed (a connection discarded), open one in its place.
        return handed if handed is not None else await self._open()

    async def _open(self) -> asyncpg.Connection:
        self._opened += 1
        try:
            return await asyncpg.connect(self._dsn)
        except BaseException:
            self._opened -= 1
            self._wake_one(None)
            raise

    def _release(self, connection: asyncpg.Connection) -> None:
        if self._closed or connection.is_closed():
            self._discard(connection)
            return
        if not self._wake_one(connection):
            self._idle.append(connection)

    def _discard(self, connection: asyncpg.Connection) -> None:
        self._opened -= 1
        connection.terminate()  # no round trip: its state is unknown
        if not self._closed:
            self._wake_one(None)

    def _wake_one(self, connection: asyncpg.Connection | None) -> bool:
        """Hand ``connection`` (or, with None, the right to open one) to the oldest
        waiter still waiting; False when nobody waits."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return True
        return False


async def _close_quietly(connection: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(connection.close(), timeout=2)
    except Exception as error:  # closing is best effort; the server drops it anyway
        log.debug("held connection close failed", extra={"error": repr(error)})
        connection.terminate()
