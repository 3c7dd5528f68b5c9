"""Reading a room's chat history from Omni (DESIGN.md §6, §7).

``GET {base_url}/api/open/v1/messages/rooms/{room_id}?offset=1&limit=100`` with the
bearer token of the team's Omnichannel link: the latest 100 messages, newest first.
Anything other than a 200 with the expected shape, within the deadline, is a
:class:`HistoryUnavailable`; the caller writes its note without an excerpt.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import AwareDatetime, BaseModel, ValidationError

from crm_service.timeline.excerpt import ChatMessage, clean

HISTORY_PAGE_SIZE = 100
# 100 messages of at most 10,000 characters each, JSON-escaped, fit with room to spare;
# a larger answer is not what we asked for and is not read to the end.
MAX_HISTORY_BYTES = 8 * 1024 * 1024


class HistoryUnavailable(Exception):
    """The history could not be read; the message says why (never a credential)."""


@dataclass(frozen=True)
class OmniLink:
    base_url: str
    public_url: str
    api_token: str = field(repr=False)


class _HistoryItem(BaseModel):
    sender: str
    text: str
    created_at: AwareDatetime


def history_url(base_url: str, room_id: str) -> str:
    return f"{base_url.rstrip('/')}/api/open/v1/messages/rooms/{quote(room_id, safe='')}"


async def fetch_history(
    client: httpx.AsyncClient, link: OmniLink, room_id: str, *, deadline_seconds: float
) -> list[ChatMessage]:
    """The room's latest messages. ``deadline_seconds`` bounds each phase of the request
    (whatever the client's own timeouts) and the whole exchange, since httpx's timeouts
    bound each read, not a server that trickles its answer."""
    try:
        async with asyncio.timeout(deadline_seconds):
            body = await _get(client, link, room_id, deadline_seconds)
    except TimeoutError as error:
        raise HistoryUnavailable(f"no answer within {deadline_seconds:g} s") from error
    except httpx.TimeoutException as error:
        raise HistoryUnavailable(f"timed out ({type(error).__name__})") from error
    except httpx.HTTPError as error:
        raise HistoryUnavailable(f"request failed ({type(error).__name__})") from error
    try:
        payload = json.loads(body)
    except ValueError as error:
        raise HistoryUnavailable("answer is not JSON") from error
    return parse_history(payload)


async def _get(
    client: httpx.AsyncClient, link: OmniLink, room_id: str, timeout_seconds: float
) -> bytes:
    async with client.stream(
        "GET",
        history_url(link.base_url, room_id),
        params={"offset": 1, "limit": HISTORY_PAGE_SIZE},
        headers={"Authorization": f"Bearer {link.api_token}", "Accept": "application/json"},
        timeout=httpx.Timeout(timeout_seconds),
    ) as response:
        if response.status_code != httpx.codes.OK:
            raise HistoryUnavailable(f"Omni answered {response.status_code}")
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body.extend(chunk)
            if len(body) > MAX_HISTORY_BYTES:
                raise HistoryUnavailable(f"answer larger than {MAX_HISTORY_BYTES} bytes")
        return bytes(body)


def parse_history(payload: Any) -> list[ChatMessage]:
    """Messages of a history page. A page that is not ``{"items": [...]}`` is unreadable;
    a single malformed or empty entry is skipped."""
    if not isinstance(payload, dict) or not isinstance(payload.get("items"), list):
        raise HistoryUnavailable("answer is not a message page")
    messages: list[ChatMessage] = []
    for raw in payload["items"]:
        message = _parse_item(raw)
        if message is not None:
            messages.append(message)
    return messages


def _parse_item(raw: Any) -> ChatMessage | None:
    try:
        item = _HistoryItem.model_validate(raw)
    except ValidationError:
        return None
    sender, text = clean(item.sender), clean(item.text)
    if not sender or not text:
        return None
    sent_at: datetime = item.created_at
    return ChatMessage(sender=sender, text=text, sent_at=sent_at)
