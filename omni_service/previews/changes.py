"""Room-preview change notifications, for the live stream (``stream.py``).

A change committed through any Omni process must wake the streams every process
serves. On PostgreSQL the receiver issues ``pg_notify`` in the transaction that applied
the event: PostgreSQL delivers it to every listening connection only if and when that
transaction commits, so no stream sees a change that rolled back or misses one that
committed. Each process keeps one ``LISTEN`` connection (reconnected if it drops) and
fans a notification out to its local subscribers. On SQLite (the embedded mode, one
process) the receiver's after-commit hook wakes the local subscribers directly.

A notification only says "room R of organization O changed"; the stream re-reads the
preview and sends it if its ETag moved, so a lost or duplicated wake-up costs at most one
heartbeat interval (the stream re-reads on every heartbeat too) and never shows stale data.

The same notifications invalidate the process's :class:`PreviewCache` (what the polled
``crm_preview`` answers from); the feed also tells it when notifications can be trusted
(the LISTEN connection is up) and marks a room pending while this process's own
transaction changing it is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from omni_service.previews.caching import PreviewCache
from service_kit.database import libpq_dsn, on_commit, on_rollback

log = logging.getLogger(__name__)

CHANNEL = "omni_room_previews"
RECONNECT_SECONDS = 1.0
RoomKey = tuple[int, str]


class ChangeFeed:
    """Local subscribers per (organization, room), fed by this process's commits
    (SQLite) or by PostgreSQL notifications from any process."""

    def __init__(self, database_url: str, cache: PreviewCache | None = None) -> None:
        self._listen_dsn = libpq_dsn(database_url)
        self._subscribers: dict[RoomKey, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()
        self.cache = PreviewCache(ttl_seconds=0, max_entries=0) if cache is None else cache

    @property
    def uses_postgres(self) -> bool:
        return self._listen_dsn is not None

    # -- subscribers -----------------------------------------------------------------

    @contextlib.contextmanager
    def subscribe(self, organization_id: int, room_id: str) -> Iterator[asyncio.Event]:
        key = (organization_id, room_id)
        event = asyncio.Event()
        self._subscribers.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            waiting = self._subscribers.get(key)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._subscribers[key]

    def wake(self, organization_id: int, room_id: str) -> None:
        self.cache.invalidate((organization_id, room_id))
        for event in self._subscribers.get((organization_id, room_id), ()):
            event.set()

    def wake_all(self) -> None:
        """After the LISTEN connection was lost, notifications may have been missed."""
        for events in self._subscribers.values():
            for event in events:
                event.set()

    # -- publishing --------------------------------------------------------------------

    async def announce(self, session: AsyncSession, organization_id: int, room_id: str) -> None:
        """Tell every stream and cache of the room, once this transaction commits."""
        key = (organization_id, room_id)
        self.cache.begin_change(key)

        async def ended() -> None:
            self.cache.end_change(key)

        async def committed() -> None:
            self.cache.end_change(key)
            if not self.uses_postgres:
                self.wake(organization_id, room_id)

        on_commit(session, committed)
        on_rollback(session, ended)
        if self.uses_postgres:
            await session.execute(select(func.pg_notify(CHANNEL, self.payload(*key))))

    @staticmethod
    def payload(organization_id: int, room_id: str) -> str:
        return json.dumps([organization_id, room_id])

    # -- the LISTEN connection ---------------------------------------------------------

    def start(self) -> None:
        if self.uses_postgres and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._listen_forever())
        elif not self.uses_postgres:
            self.listening.set()
            self.cache.usable = True

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.cache.usable = False
        self.cache.reset()
        self.wake_all()

    async def _listen_forever(self) -> None:
        import asyncpg

        assert self._listen_dsn is not None
        while True:
            lost = asyncio.Event()
            connection: Any = None
            try:
                connection = await asyncpg.connect(self._listen_dsn)
                connection.add_termination_listener(self._lost_setter(lost))
                await connection.add_listener(CHANNEL, self._on_notification)
                # From here every commit is notified: answers read before are refused.
                self.cache.reset()
                self.cache.usable = True
                self.listening.set()
                # Anything committed while we were not listening: re-read once.
                self.wake_all()
                await lost.wait()
                log.warning("preview LISTEN connection lost; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("preview LISTEN connection failed; retrying")
            finally:
                self.cache.usable = False
                self.cache.reset()
                self.listening.clear()
                if connection is not None and not connection.is_closed():
                    with contextlib.suppress(Exception):
                        await connection.close(timeout=1)
            await asyncio.sleep(RECONNECT_SECONDS)

    def _lost_setter(self, lost: asyncio.Event) -> Any:
        def on_lost(_connection: Any) -> None:
            # At once, not when the loop task resumes: no poll may trust the cache now.
            self.cache.usable = False
            lost.set()

        return on_lost

    def _on_notification(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            organization_id, room_id = json.loads(payload)
        except (ValueError, TypeError):
            log.warning("malformed preview notification %r", payload)
            return
        self.wake(int(organization_id), str(room_id))
