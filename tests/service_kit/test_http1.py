"""The lean HTTP/1.1 transport (``service_kit/http1.py``) through httpx's client, against
real servers on local sockets: framing, keep-alive, timeouts, broken connections, TLS."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from service_kit.http1 import Http1Transport

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter
Handler = Callable[[Reader, Writer, "Server"], Awaitable[None]]


class Server:
    """A TCP server whose every connection runs ``handler``; counts connections and keeps
    the requests it read."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []  # (head, body)
        self.url = ""

    async def read_request(self, reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await reader.readexactly(length) if length else b""
        self.requests.append((head, body))
        return head, body

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer, self)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    server = Server(handler)
    listener = await asyncio.start_server(server._serve, "127.0.0.1", 0, ssl=tls)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"{'https' if tls else 'http'}://localhost:{port}"
    try:
        yield server
    finally:
        listener.close()


def answer(body: bytes, *extra: bytes, status: bytes = b"200 OK") -> bytes:
    headers = b"".join(header + b"\r\n" for header in extra)
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-length: %d\r\n" % len(body) + headers + b"\r\n" + body
    )


async def keep_alive(reader: Reader, writer: Writer, s: Server) -> None:
    while await s.read_request(reader) is not None:
        writer.write(answer(b'{"n": %d}' % len(s.requests)))
        await writer.drain()


@asynccontextmanager
async def client(**options: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = Http1Transport(**options)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, timeout=2) as http:
        yield http


async def test_requests_reuse_one_kept_alive_connection() -> None:
    async with serving(keep_alive) as server, client() as http:
        for n in range(1, 4):
            response = await http.post(f"{server.url}/hook?x=1", content=b"payload")
            assert response.status_code == 200
            assert response.json() == {"n": n}
        assert server.connections == 1
        head, body = server.requests[0]
        assert head.startswith(b"POST /hook?x=1 HTTP/1.1\r\n")
        assert b"host: localhost:" in head.lower()
        assert b"content-length: 7" in head.lower()
        assert body == b"payload"


async def test_concurrent_requests_open_at_most_max_connections() -> None:
    async def slow(reader: Reader, writer: Writer, s: Server) -> None:
        while await s.read_request(reader) is not None:
            await asyncio.sleep(0.05)
            writer.write(answer(b"ok"))

    async with serving(slow) as server, client(max_connections=3) as http:
        responses = await asyncio.gather(*(http.get(server.url) for _ in range(9)))
        assert [r.text for r in responses] == ["ok"] * 9
        assert server.connections == 3


async def test_chunked_and_close_delimited_bodies_are_read_whole() -> None:
    async def chunked(reader: Reader, writer: Writer, s: Server) -> None:
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for part in (b"hello ", b"chunked ", b"world"):
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
        await s.read_request(reader)  # kept alive: a second request on the same connection
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end")
        await writer.drain()

    async with serving(chunked) as server, client() as http:
        assert (await http.get(server.url)).text == "hello chunked world"
        assert (await http.get(server.url)).text == "until the end"
        assert server.connections == 1
        # That answer said close: the next request opens a new connection.
        await http.get(server.url)
        assert server.connections == 2


async def test_a_response_left_unread_closes_its_connection() -> None:
    async with serving(keep_alive) as server, client() as http:
        async with http.stream("GET", server.url) as response:
            assert response.status_code == 200  # the body is never read
        await http.get(server.url)
        assert server.connections == 2


async def test_an_idle_connection_the_server_closed_is_not_reused() -> None:
    async def once(reader: Reader, writer: Writer, s: Server) -> None:
        await s.read_request(reader)
        writer.write(answer(b"first"))
        await writer.drain()
        # Then closes the kept-alive connection while it idles.

    async with serving(once) as server, client() as http:
        assert (await http.get(server.url)).text == "first"
        await asyncio.sleep(0.1)
        assert (await http.get(server.url)).text == "first"
        assert server.connections == 2


async def drop_second(reader: Reader, writer: Writer, s: Server) -> None:
    await s.read_request(reader)
    writer.write(answer(b"first"))
    await writer.drain()
    await s.read_request(reader)  # read, then closed without a byte of answer


async def test_a_reused_connection_closed_unanswered_sends_a_get_again_once() -> None:
    async with serving(drop_second) as server, client() as http:
        assert (await http.get(f"{server.url}/a")).text == "first"
        assert (await http.get(f"{server.url}/b")).text == "first"
        assert server.connections == 2
        paths = [head.split(b" ")[1] for head, _ in server.requests]
        assert paths == [b"/a", b"/b", b"/b"]


async def test_a_post_is_never_sent_twice() -> None:
    async with serving(drop_second) as server, client() as http:
        assert (await http.post(server.url, content=b"a")).text == "first"
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(server.url, content=b"b")
        assert [body for _, body in server.requests] == [b"a", b"b"]


async def test_a_new_connection_closed_unanswered_is_an_error() -> None:
    async def drop(reader: Reader, writer: Writer, s: Server) -> None:
        await s.read_request(reader)

    async with serving(drop) as server, client() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(server.url, content=b"a")
        assert server.connections == 1


async def test_a_silent_server_is_a_read_timeout_and_a_trickle_too() -> None:
    async def silent(reader: Reader, writer: Writer, s: Server) -> None:
        await s.read_request(reader)
        await asyncio.sleep(5)

    async def trickle(reader: Reader, writer: Writer, s: Server) -> None:
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nx")
        await asyncio.sleep(5)

    async with client() as http:
        for handler in (silent, trickle):
            async with serving(handler) as server:
                with pytest.raises(httpx.ReadTimeout):
                    await http.get(server.url, timeout=0.3)
        assert http._transport.open_connections == 0  # type: ignore[attr-defined]


async def test_a_refused_connection_is_a_connect_error() -> None:
    async with serving(keep_alive) as server:
        url = server.url
    async with client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(url)
        assert http._transport.open_connections == 0  # type: ignore[attr-defined]


async def test_a_malformed_answer_is_a_protocol_error() -> None:
    async def garbage(reader: Reader, writer: Writer, s: Server) -> None:
        await s.read_request(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async with serving(garbage) as server, client() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get(server.url)


async def test_a_request_waits_for_a_connection_up_to_the_pool_timeout() -> None:
    async def slow(reader: Reader, writer: Writer, s: Server) -> None:
        await s.read_request(reader)
        await asyncio.sleep(1)
        writer.write(answer(b"late"))

    async with serving(slow) as server, client(max_connections=1) as http:
        first = asyncio.create_task(http.get(server.url))
        await asyncio.sleep(0.1)
        timeout = httpx.Timeout(5, pool=0.2)
        with pytest.raises(httpx.PoolTimeout):
            await http.get(server.url, timeout=timeout)
        assert (await first).text == "late"


async def test_status_headers_and_gzip_reach_the_caller_as_httpx_gives_them() -> None:
    import gzip

    packed = gzip.compress(b'{"ok": true}')

    async def gzipped(reader: Reader, writer: Writer, s: Server) -> None:
        await s.read_request(reader)
        writer.write(
            answer(
                packed,
                b"content-encoding: gzip",
                b"retry-after: 7",
                status=b"503 Service Unavailable",
            )
        )
        await writer.drain()

    async with serving(gzipped) as server, client() as http:
        response = await http.get(server.url)
        assert response.status_code == 503
        assert response.reason_phrase == "Service Unavailable"
        assert response.headers["retry-after"] == "7"
        assert response.json() == {"ok": True}


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_checks_the_certificate(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    async with serving(keep_alive, tls=served) as server:
        trusted = ssl.create_default_context(cafile=str(cert))
        async with client(ssl_context=trusted) as http:
            assert (await http.get(server.url)).json() == {"n": 1}
            assert (await http.get(server.url)).json() == {"n": 2}
        assert server.connections == 1
        async with client() as http:  # the system's trust store: a self-signed certificate fails
            with pytest.raises(httpx.ConnectError):
                await http.get(server.url)
