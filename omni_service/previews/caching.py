"""Conditional GET for the preview poll: a strong ETag over the exact body, and the
``If-None-Match`` comparison (RFC 9110 §13.1.2: weak comparison, lists, ``*``)."""

from __future__ import annotations

import hashlib

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
