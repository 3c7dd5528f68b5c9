"""A lean HTTP/1.1 keep-alive transport for httpx, for a process's busiest outbound path.

The CRM worker sends every webhook and reads every chat history through one httpx
client. Under load httpcore's pool and its anyio backend (a cancel scope and a
``fail_after`` around every read and write, an event per request, a pool rescan per
request and per close) were a third of a pool child's CPU. This transport keeps httpx's
client API (``client.stream``, its timeouts, its exceptions, its response decoding) and
does the exchange itself: an ``asyncio.Protocol`` per connection, responses parsed by
``httptools`` (the C parser uvicorn serves with), an O(1) pool per origin.

What it does, as httpcore does:
- keep-alive: a connection whose response was read to the end and did not say
  ``Connection: close`` goes back to its origin's pool (most recently used first); one
  idle longer than ``keepalive_expiry`` or closed by the server is dropped, never reused;
- bodies framed by ``Content-Length``, chunked, or read to the connection's close;
- ``connect``, ``read``, ``write`` and ``pool`` timeouts from the request's extensions,
  raised as httpx's own exceptions (``ConnectTimeout``, ``ReadTimeout``, …), connection
  failures as ``ConnectError`` / ``ReadError`` / ``RemoteProtocolError``;
- TLS with httpx's default context (certificate and host name checked);
- at most ``max_connections`` open at once; a request beyond waits (``pool`` timeout).

One thing more, for idempotent methods only (GET, HEAD, OPTIONS): a request sent on a
*reused* connection that the server closed before answering a single byte (an idle
connection closed as it was reused) is sent once more on a new connection. A POST is
never sent twice by the transport, as with httpcore: it fails (``RemoteProtocolError``),
and a webhook's attempt is then retried on the delivery schedule.

A response closed before its body was read to the end (the worker reads at most a KiB of
a webhook answer) closes its connection: what is left of the body is never read.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator

import httptools
import httpx

# A response's head (status line and headers) is refused beyond this.
MAX_HEAD_BYTES = 64 * 1024
# Reading pauses while this much of a body waits unread.
READ_BUFFER_BYTES = 256 * 1024
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})  # sent again on a stale connection
KEEPALIVE_EXPIRY_SECONDS = 5.0  # httpx's default; uvicorn closes idle connections at 5 s

Origin = tuple[bytes, bytes, int]


class _Lost(Exception):
    """The connection closed (or broke) while an exchange was under way."""


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection and the exchange under way on it, if any."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.discarded = False  # counted out of the pool
        self.idle_since = time.monotonic()
        self._signal: asyncio.Future[None] | None = None
        self._write_ready: asyncio.Future[None] | None = None
        self._reset_exchange()

    def _reset_exchange(self) -> None:
        self.received = 0
        self.status_code = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.framed = True  # length or chunks; False: the body ends with the connection
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.paused = False
        self.error: BaseException | None = None
        self.active = False

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self.active:  # nothing was asked: a server talking out of turn
            self.close()
            return
        self.received += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(_Lost("the server switched protocols"))
        except httptools.HttpParserError as error:
            self._fail(httpx.RemoteProtocolError(f"malformed HTTP response: {error}"))

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.active and not self.complete:
            if self.head_done and not self.framed:
                self.complete = True  # a body that ends with the connection
                self.keep_alive = False
                self._wake()
            else:
                self._fail(_Lost(str(exc) if exc else "the server closed the connection"))
        if self._write_ready is not None and not self._write_ready.done():
            self._write_ready.set_result(None)

    def pause_writing(self) -> None:
        if self._write_ready is None or self._write_ready.done():
            self._write_ready = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._write_ready is not None and not self._write_ready.done():
            self._write_ready.set_result(None)

    # -- httptools callbacks -------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self.reason += status
        self._count_head(len(status))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        self._count_head(len(name) + len(value))

    def on_headers_complete(self) -> None:
        self.status_code = self.parser.get_status_code()
        self.keep_alive = bool(self.parser.should_keep_alive())
        names = {name.lower() for name, _ in self.headers}
        self.framed = (
            b"content-length" in names
            or b"transfer-encoding" in names
            or self.status_code in (204, 304)
            or 100 <= self.status_code < 200
        )
        if 100 <= self.status_code < 200:  # an interim answer: the real one follows
            self.reason, self.headers, self.head_bytes = b"", [], 0
            return
        self.head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > READ_BUFFER_BYTES and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self.head_done:
            return  # the end of an interim answer
        self.complete = True
        self._wake()

    # -- used by the transport -----------------------------------------------------------

    def _count_head(self, size: int) -> None:
        self.head_bytes += size
        if self.head_bytes > MAX_HEAD_BYTES:
            self._fail(httpx.RemoteProtocolError("response head too large"))

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self._wake()
        self.close()

    def _wake(self) -> None:
        signal = self._signal
        if signal is not None and not signal.done():
            signal.set_result(None)

    async def wait(self, seconds: float | None) -> None:
        """Until the parser has something new (or the exchange failed)."""
        self._signal = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(seconds):
                await self._signal
        finally:
            self._signal = None

    async def send(self, data: bytes, seconds: float | None) -> None:
        self._reset_exchange()
        self.active = True
        assert self.transport is not None
        self.transport.write(data)
        ready = self._write_ready
        if ready is not None and not ready.done():
            try:
                async with asyncio.timeout(seconds):
                    await ready
            except TimeoutError:
                raise httpx.WriteTimeout("timed out writing the request") from None
        if self.closed and self.error is None:
            raise _Lost("the server closed the connection")

    def take_chunk(self) -> bytes | None:
        if not self.chunks:
            return None
        chunk = self.chunks.popleft()
        self.buffered -= len(chunk)
        if self.paused and self.buffered <= READ_BUFFER_BYTES // 2 and self.transport:
            self.paused = False
            self.transport.resume_reading()
        return chunk

    def reusable(self, now: float, expiry: float) -> bool:
        return (
            not self.closed
            and self.transport is not None
            and not self.transport.is_closing()
            and now - self.idle_since < expiry
        )

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Http1Transport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        *,
        max_connections: int = 20,
        keepalive_expiry: float = KEEPALIVE_EXPIRY_SECONDS,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._max = max_connections
        self._expiry = keepalive_expiry
        self._ssl = ssl_context
        self._idle: dict[Origin, list[_Connection]] = {}
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    @property
    def open_connections(self) -> int:
        return self._open

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("the transport is closed")
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        origin: Origin = (
            url.raw_scheme,
            url.raw_host,
            url.port or (443 if url.scheme == "https" else 80),
        )
        head = _request_head(request)
        body = b"".join([chunk async for chunk in request.stream])  # type: ignore[union-attr]
        if body and not request.headers.get("content-length"):
            head += b"content-length: %d\r\n" % len(body)
        data = head + b"\r\n" + body
        idempotent = request.method in IDEMPOTENT
        for attempt in (1, 2):
            connection, reused = await self._checkout(origin, timeouts, request)
            try:
                await connection.send(data, timeouts.get("write"))
                while not connection.head_done and connection.error is None:
                    await connection.wait(timeouts.get("read"))
                if connection.error is not None:
                    raise connection.error
            except _Lost as lost:
                self.discard(connection)
                if reused and attempt == 1 and connection.received == 0 and idempotent:
                    continue  # closed as it was reused: nothing was answered
                raise httpx.RemoteProtocolError(
                    f"server disconnected without a complete response: {lost}", request=request
                ) from None
            except TimeoutError:
                self.discard(connection)
                raise httpx.ReadTimeout("timed out reading the response", request=request) from None
            except httpx.TransportError as error:
                self.discard(connection)
                error.request = request
                raise
            except BaseException:
                self.discard(connection)
                raise
            return httpx.Response(
                connection.status_code,
                headers=connection.headers,
                stream=_ResponseBody(self, connection, timeouts.get("read"), request),
                extensions={"http_version": b"HTTP/1.1", "reason_phrase": connection.reason},
                request=request,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        self._closed = True
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
                self._open -= 1
        self._idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    # -- the pool ------------------------------------------------------------------------

    async def _checkout(
        self, origin: Origin, timeouts: dict[str, float | None], request: httpx.Request
    ) -> tuple[_Connection, bool]:
        connection = self._take_idle(origin)
        if connection is not None:
            return connection, True
        while self._open >= self._max:
            if not self._make_room():
                await self._wait_for_room(timeouts.get("pool"), request)
                connection = self._take_idle(origin)
                if connection is not None:
                    return connection, True
        return await self._connect(origin, timeouts.get("connect"), request), False

    def _take_idle(self, origin: Origin) -> _Connection | None:
        """The origin's most recently used idle connection still fit to reuse; the stale
        ones found on the way are closed."""
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if connection.reusable(now, self._expiry):
                return connection
            self.discard(connection)
        return None

    async def _wait_for_room(self, seconds: float | None, request: httpx.Request) -> None:
        """Until a connection is given back or closed (``pool`` timeout)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(seconds):
                await waiter
        except TimeoutError:
            raise httpx.PoolTimeout("timed out waiting for a connection", request=request) from None
        finally:
            if not waiter.done():
                waiter.cancel()
        if self._closed:
            raise RuntimeError("the transport is closed")

    def _make_room(self) -> bool:
        """Close an idle connection of any origin, to open one for another."""
        for connections in self._idle.values():
            if connections:
                self.discard(connections.pop(0))
                return True
        return False

    async def _connect(
        self, origin: Origin, seconds: float | None, request: httpx.Request
    ) -> _Connection:
        scheme, host, port = origin
        self._open += 1
        loop = asyncio.get_running_loop()
        tls: ssl.SSLContext | None = None
        if scheme == b"https":
            if self._ssl is None:
                self._ssl = httpx.create_ssl_context()
            tls = self._ssl
        name = host.decode("ascii")
        try:
            async with asyncio.timeout(seconds):
                _, connection = await loop.create_connection(
                    lambda: _Connection(origin),
                    name,
                    port,
                    ssl=tls,
                    server_hostname=name if tls else None,
                )
        except TimeoutError:
            self._closed_one()
            raise httpx.ConnectTimeout("timed out connecting", request=request) from None
        except OSError as error:  # refused, unreachable, name not found, TLS refused
            self._closed_one()
            raise httpx.ConnectError(str(error) or type(error).__name__, request=request) from None
        except BaseException:
            self._closed_one()
            raise
        return connection

    def release(self, connection: _Connection) -> None:
        """A response read to its end: keep the connection if both sides allow."""
        connection.active = False
        if self._closed or connection.closed or not connection.keep_alive:
            self.discard(connection)
            return
        connection.idle_since = time.monotonic()
        self._idle.setdefault(connection.origin, []).append(connection)
        self._wake_one()

    def discard(self, connection: _Connection) -> None:
        if connection.discarded:
            return
        connection.discarded = True
        connection.close()
        self._closed_one()

    def _closed_one(self) -> None:
        self._open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class _ResponseBody(httpx.AsyncByteStream):
    def __init__(
        self,
        pool: Http1Transport,
        connection: _Connection,
        read_timeout: float | None,
        request: httpx.Request,
    ) -> None:
        self._pool = pool
        self._connection = connection
        self._timeout = read_timeout
        self._request = request
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        while True:
            chunk = connection.take_chunk()
            if chunk is not None:
                yield chunk
                continue
            if connection.complete:
                return
            if connection.error is not None:
                await self.aclose()
                raise httpx.ReadError(
                    f"the response broke off: {connection.error}", request=self._request
                )
            try:
                await connection.wait(self._timeout)
            except TimeoutError:
                await self.aclose()
                raise httpx.ReadTimeout(
                    "timed out reading the response", request=self._request
                ) from None

    async def aclose(self) -> None:
        if self._done:
            return
        self._done = True
        connection = self._connection
        if connection.complete and not connection.chunks and connection.error is None:
            self._pool.release(connection)
        else:
            self._pool.discard(connection)


def _request_head(request: httpx.Request) -> bytes:
    target = request.url.raw_path or b"/"
    lines = [request.method.encode("ascii") + b" " + target + b" HTTP/1.1\r\n"]
    for name, value in request.headers.raw:
        if b"\r" in value or b"\n" in value:
            raise httpx.LocalProtocolError("header value holds a line break", request=request)
        lines.append(name + b": " + value + b"\r\n")
    return b"".join(lines)
