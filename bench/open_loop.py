"""A lean open-loop HTTP/1.1 client for the create → preview phase of ``make bench``.

httpx spent 3-6 ms of CPU per request here: at 100 creates/s the generator alone took
two thirds of a core of this 2-core machine, and the stack it measured ran short of CPU
because of it. This client does what that phase needs and nothing more — keep-alive
connections over asyncio streams, one request at a time per connection, the response
read by its ``Content-Length`` — at a fraction of the cost, so what it measures is the
system's latency, not the generator's.

An idle connection is reused only if the server has not closed it and it has idled less
than :data:`IDLE_SECONDS` (uvicorn closes kept-alive connections idle for 5 s). A request
whose reused connection turns out closed before a byte of answer is sent once more on a
new connection: the server never read it, so it is the client's artefact, not a failure
of the system measured.

    async with OpenLoopClient("http://127.0.0.1:8000", {"Authorization": "Bearer …"}) as http:
        status = await http.post_json("/api/v3.1/deals", body)
"""

from __future__ import annotations

import asyncio
import json
import time
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
IDLE_SECONDS = 4.0


class OpenLoopClient:
    """POSTs JSON over up to ``max_connections`` kept-alive connections (a request that
    finds none idle opens one, so a slow server never delays a scheduled send)."""

    def __init__(
        self, base_url: str, headers: dict[str, str], *, max_connections: int = 256
    ) -> None:
        parts = urlsplit(base_url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._headers = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self._gate = asyncio.Semaphore(max_connections)
        self._open: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> OpenLoopClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for writer in self._open:
            writer.close()
        self._open.clear()
        self._idle.clear()

    async def post_json(self, path: str, body: Any) -> int:
        """The response's status code; raises ``OSError`` (or ``EOFError``) on a broken
        connection, which is then dropped."""
        payload = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n{self._headers}"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode()
        async with self._gate:
            for attempt in (1, 2):
                reused = self._reusable()
                reader, writer = reused or await self._connect()
                try:
                    writer.write(head + payload)
                    status, keep = await _read_response(reader)
                except (ConnectionError, asyncio.IncompleteReadError) as error:
                    self._drop(writer)
                    unanswered = not isinstance(error, asyncio.IncompleteReadError) or (
                        not error.partial
                    )
                    if reused is not None and attempt == 1 and unanswered:
                        continue  # closed by the server as it was reused: never read
                    raise
                except BaseException:
                    self._drop(writer)
                    raise
                if keep:
                    self._idle.append((reader, writer, time.monotonic()))
                else:
                    self._drop(writer)
                return status
        raise AssertionError("unreachable")

    def _reusable(self) -> Connection | None:
        now = time.monotonic()
        while self._idle:
            reader, writer, since = self._idle.pop()
            if reader.at_eof() or writer.is_closing() or now - since > IDLE_SECONDS:
                self._drop(writer)
                continue
            return reader, writer
        return None

    async def _connect(self) -> Connection:
        reader, writer = await asyncio.open_connection(self._host, self._port)
        self._open.add(writer)
        return reader, writer

    def _drop(self, writer: asyncio.StreamWriter) -> None:
        self._open.discard(writer)
        writer.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Status code and whether the connection stays open; the body is read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, keep = 0, True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            keep = False
        elif name == "transfer-encoding":
            raise EOFError("chunked answers are not expected here")
    if length:
        await reader.readexactly(length)
    return status, keep
