"""The open-loop client of ``make bench`` (``bench/open_loop.py``): a connection the
server closed while it idled is not counted as a failed create."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from bench.open_loop import OpenLoopClient

CREATED = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", connections
    finally:
        server.close()


async def read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    await reader.readexactly(length)


async def test_a_connection_closed_while_idle_is_replaced() -> None:
    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(CREATED)
        await writer.drain()  # then closes, as uvicorn does an idle kept-alive connection

    async with serving(answer_once) as (url, connections), OpenLoopClient(url, {}) as http:
        assert await http.post_json("/deals", {"n": 1}) == 201
        await asyncio.sleep(0.05)
        assert await http.post_json("/deals", {"n": 2}) == 201
        assert len(connections) == 2


async def test_a_reused_connection_closed_unanswered_is_sent_again() -> None:
    async def drop_second(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(CREATED)
        await writer.drain()
        await read_request(reader)  # read, then closed without an answer

    async with serving(drop_second) as (url, connections), OpenLoopClient(url, {}) as http:
        assert await http.post_json("/deals", {"n": 1}) == 201
        assert await http.post_json("/deals", {"n": 2}) == 201
        assert len(connections) == 2


async def test_a_new_connection_closed_unanswered_is_a_failure() -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with serving(drop) as (url, _), OpenLoopClient(url, {}) as http:
        with pytest.raises(asyncio.IncompleteReadError):
            await http.post_json("/deals", {"n": 1})
