"""Conditional GET for the preview poll: a strong ETag over the exact body, the
``If-None-Match`` comparison (RFC 9110 §13.1.2: weak comparison, lists, ``*``), and the
per-process cache of each room's last answer."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

from service_kit.expiring import ExpiringLRU

# The inbox polls: the browser may keep a copy but must revalidate it on every poll
# (a 304 is cheap), and no shared cache may hold one organization's preview.
POLL_CACHE_CONTROL = "private, no-cache"


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _opaque(tag: str) -> str:
    tag = tag.strip()
    return tag[2:] if tag.startswith("W/") else tag


def matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = [_opaque(tag) for tag in if_none_match.split(",")]
    return "*" in candidates or _opaque(etag) in candidates


@dataclass(frozen=True, slots=True)
class CachedPreview:
    """One room's answer as sent: the exact body and its ETag."""

    etag: str
    body: bytes
    has_deal: bool


RoomKey = tuple[int, str]


class PreviewCache:
    """The last answer per (organization, room), so that an unchanged poll costs no
    database round trip (README "Omni caches").

    Invalidated by the change feed (``changes.py``): a notification for the room drops
    its entry. Three rules keep it from ever holding an answer older than the last
    invalidation it was told about:

    * **Tickets.** A filler takes :meth:`ticket` before it reads the database and
      :meth:`store` refuses the answer if the room was invalidated since (the
      notification overtook the read, which may have seen the old rows). Invalidations
      are remembered per room in a bounded map; when one is forgotten, every ticket
      older than it is refused.
    * **Pending writes.** While a transaction of this process that changes the room is
      open, the room is not served from or stored into the cache (:meth:`begin_change`,
      :meth:`end_change`), so this process shows its own change on the next poll after
      the commit, without waiting for the notification's round trip.
    * **Usable only while notified.** The feed sets :attr:`usable` only while its LISTEN
      connection is up (always, on SQLite) and :meth:`reset` clears everything when it
      connects or drops: a change committed while nobody listened is never hidden.

    Entries also expire after ``ttl_seconds``, a bound for a notification lost without
    the connection noticing, and at most ``max_entries`` rooms are held (LRU).
    """

    def __init__(self, *, ttl_seconds: float, max_entries: int, remembered: int = 4096) -> None:
        self._entries: ExpiringLRU[RoomKey, CachedPreview] = ExpiringLRU(
            ttl_seconds=ttl_seconds, max_entries=max_entries
        )
        self._generation = 0
        self._invalidated: OrderedDict[RoomKey, int] = OrderedDict()
        self._remembered = remembered
        self._forgotten_up_to = 0
        self._pending: dict[RoomKey, int] = {}
        self.usable = False

    def lookup(self, key: RoomKey) -> CachedPreview | None:
        if not self.usable or key in self._pending:
            return None
        return self._entries.get(key)

    def ticket(self) -> int:
        return self._generation

    def store(self, key: RoomKey, ticket: int, preview: CachedPreview) -> None:
        if (
            not self.usable
            or key in self._pending
            or ticket < self._forgotten_up_to
            or self._invalidated.get(key, -1) > ticket
        ):
            return
        self._entries.put(key, preview)

    def invalidate(self, key: RoomKey) -> None:
        self._generation += 1
        self._entries.pop(key)
        self._invalidated[key] = self._generation
        self._invalidated.move_to_end(key)
        while len(self._invalidated) > self._remembered:
            _, generation = self._invalidated.popitem(last=False)
            self._forgotten_up_to = max(self._forgotten_up_to, generation)

    def reset(self) -> None:
        """Forget everything, and refuse every answer read before now."""
        self._generation += 1
        self._forgotten_up_to = self._generation
        self._invalidated.clear()
        self._entries.clear()

    def begin_change(self, key: RoomKey) -> None:
        self._pending[key] = self._pending.get(key, 0) + 1
        self.invalidate(key)

    def end_change(self, key: RoomKey) -> None:
        """After the changing transaction committed or rolled back."""
        left = self._pending.get(key, 0) - 1
        if left > 0:
            self._pending[key] = left
        else:
            self._pending.pop(key, None)
        self.invalidate(key)

    def __len__(self) -> int:
        return len(self._entries)
