"""The chat excerpt of a timeline note (DESIGN.md §6, §10).

One line per message, ``[2026-11-27 21:05 UTC] Budi: text``, printed oldest first so the
excerpt reads like the chat (newest last). The newest messages are kept: each line is
cut to 300 characters, and older lines that no longer fit in 2,000 characters are
dropped. Characters are Python ``str`` code points (what the database and JSON count);
cuts fall on grapheme-cluster boundaries (``regex``'s ``\\X``), so an emoji, a ZWJ
family, a flag, a skin tone or a combining accent is kept whole or dropped whole, and a
cut is marked with "…", counted inside the limit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import regex

MAX_EXCERPT_CHARS = 2_000
MAX_MESSAGE_CHARS = 300
ELLIPSIS = "…"

_GRAPHEME = regex.compile(r"\X")
# Line and paragraph breaks become spaces: one message is one line of the excerpt.
_BREAKS = regex.compile(r"[\t\n\v\f\r\x85\u2028\u2029]")
# Other control characters, and the bidi overrides that can make a line display in a
# different order than it reads, are dropped. ZWJ and variation selectors (format
# characters that emoji need) are kept.
_INVISIBLE = regex.compile(r"[\p{Cc}\u202a-\u202e\u2066-\u2069]")
_SPACES = regex.compile(r" {2,}")


@dataclass(frozen=True)
class ChatMessage:
    sender: str
    text: str
    sent_at: datetime


def clean(text: str) -> str:
    """One line of printable text: breaks become spaces, control characters go."""
    visible: str = _INVISIBLE.sub("", _BREAKS.sub(" ", text))
    single_spaced: str = _SPACES.sub(" ", visible)
    return single_spaced.strip()


def truncate(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its longest whole-cluster prefix
    that fits together with the trailing "…"."""
    if len(text) <= limit:
        return text
    budget = limit - len(ELLIPSIS)
    kept = 0
    # Clusters are only looked for up to one character past the budget: a boundary
    # before that point does not depend on what follows it, and nothing later fits.
    for cluster in _GRAPHEME.finditer(text, 0, budget + 1):
        if cluster.end() > budget:
            break
        kept = cluster.end()
    return text[:kept].rstrip() + ELLIPSIS


def format_line(message: ChatMessage) -> str:
    moment = message.sent_at.astimezone(UTC)
    line = f"[{moment:%Y-%m-%d %H:%M} UTC] {message.sender}: {message.text}"
    return truncate(line, MAX_MESSAGE_CHARS)


def build_excerpt(messages: Iterable[ChatMessage]) -> str:
    """The excerpt of ``messages`` (any order); empty when there are none."""
    newest_first = sorted(messages, key=lambda message: message.sent_at, reverse=True)
    lines: list[str] = []
    used = 0
    for message in newest_first:
        line = format_line(message)
        cost = len(line) + (1 if lines else 0)  # the newline that joins it to the others
        if used + cost > MAX_EXCERPT_CHARS:
            break
        lines.append(line)
        used += cost
    return "\n".join(reversed(lines))
