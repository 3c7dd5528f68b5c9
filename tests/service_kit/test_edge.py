"""RequestEdge on its own: request ids, HTTP metrics, the body size limit and the bad-text
guard, on a small app, plus the scopes it passes through."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from starlette.types import Message, Receive, Scope, Send

from service_kit.edge import RequestEdge, install_request_edge
from service_kit.logs import REQUEST_ID, RequestIdFilter

LIMIT = 1024
HEX_ID = re.compile(r"[0-9a-f]{32}")


def make_app(registry: CollectorRegistry, **options: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: str, request: Request, q: str = "") -> dict[str, Any]:
        logging.getLogger("tests.edge").info("item read")
        return {
            "item_id": item_id,
            "request_id": REQUEST_ID.get(),
            "header": request.headers.getlist("x-request-id"),
        }

    @app.post("/items")
    async def create(payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    @app.post("/raw")
    async def raw(request: Request) -> PlainTextResponse:
        return PlainTextResponse((await request.body()).decode("latin-1"))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    @app.get("/metrics")
    async def metrics() -> str:
        return "metrics"

    install_request_edge(app, registry=registry, **options)
    return app


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def client(registry: CollectorRegistry) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(registry, max_body_bytes=LIMIT, raw_body_paths=["/raw"])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://edge.test") as http:
        yield http


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


# Request ids


async def test_a_valid_caller_id_is_kept_echoed_and_seen_by_the_app(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/items/1", headers={"X-Request-ID": "req-42:a_b.c"})

    assert response.headers["x-request-id"] == "req-42:a_b.c"
    assert response.json()["request_id"] == "req-42:a_b.c"
    assert response.json()["header"] == ["req-42:a_b.c"]


async def test_without_an_id_a_new_one_is_made_and_given_to_the_app(
    client: httpx.AsyncClient,
) -> None:
    first = await client.get("/items/1")
    second = await client.get("/items/1")

    assert HEX_ID.fullmatch(first.headers["x-request-id"])
    assert first.json()["request_id"] == first.headers["x-request-id"]
    assert first.json()["header"] == [first.headers["x-request-id"]]
    assert second.headers["x-request-id"] != first.headers["x-request-id"]
    assert first.headers.get_list("x-request-id") == [first.headers["x-request-id"]]


@pytest.mark.parametrize("forged", [b'x" injected', b"a" * 129, "é".encode(), b"a\tb"])
async def test_an_invalid_id_is_replaced_everywhere_with_a_warning(
    client: httpx.AsyncClient, forged: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="service_kit.edge"):
        response = await client.get(
            "/items/1", headers=[(b"X-Request-ID", forged), (b"X-Request-ID", b"second")]
        )

    generated = response.headers["x-request-id"]
    assert HEX_ID.fullmatch(generated)
    assert response.json()["header"] == [generated]  # both of the caller's are gone
    assert response.json()["request_id"] == generated
    assert any(generated in record.getMessage() for record in caplog.records)


async def test_the_log_filter_puts_the_id_on_every_line_of_the_request(
    client: httpx.AsyncClient,
) -> None:
    lines: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = lines.append  # type: ignore[method-assign]
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("tests.edge")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        await client.get("/items/1", headers={"X-Request-ID": "req-logged"})
    finally:
        logger.removeHandler(handler)

    assert [getattr(line, "request_id", None) for line in lines] == ["req-logged"]


async def test_refusals_and_errors_carry_the_id_too(client: httpx.AsyncClient) -> None:
    headers = {"X-Request-ID": "req-refused"}
    too_large = await client.post("/items", content=b"x" * (LIMIT + 1), headers=headers)
    bad_text = await client.get("/items/a%00b", headers=headers)

    assert too_large.headers["x-request-id"] == "req-refused"
    assert bad_text.headers["x-request-id"] == "req-refused"


# Metrics


async def test_a_templated_route_is_counted_by_template_method_and_status(
    client: httpx.AsyncClient, registry: CollectorRegistry
) -> None:
    for number in range(3):
        assert (await client.get(f"/items/{number}")).status_code == 200
    created = await client.post("/items", json={"name": "a"})

    route = {"handler": "/items/{item_id}", "method": "GET"}
    assert sample(registry, "http_requests_total", **route, status="200") == 3
    assert sample(registry, "http_request_duration_seconds_count", **route) == 3
    assert sample(registry, "http_request_duration_seconds_bucket", **route, le="+Inf") == 3
    assert sample(registry, "http_request_duration_highr_seconds_count") == 4
    assert sample(registry, "http_request_size_bytes_count", handler="/items/{item_id}") == 3
    assert sample(registry, "http_request_size_bytes_sum", handler="/items") == len(
        created.request.content
    )
    assert sample(registry, "http_response_size_bytes_sum", handler="/items") == len(
        created.content
    )
    assert (
        sample(registry, "http_requests_total", handler="/items", method="POST", status="200") == 1
    )


async def test_the_metric_families_are_the_instrumentators(registry: CollectorRegistry) -> None:
    for _ in range(2):  # a second app of the same registry shares its families
        transport = httpx.ASGITransport(app=make_app(registry))
        async with httpx.AsyncClient(transport=transport, base_url="http://edge.test") as http:
            await http.get("/items/1")

    route = {"handler": "/items/{item_id}", "method": "GET", "status": "200"}
    assert sample(registry, "http_requests_total", **route) == 2

    families = {
        family.name: (family.type, sorted({key for s in family.samples for key in s.labels}))
        for family in registry.collect()
    }
    assert families == {
        "http_requests": ("counter", ["handler", "method", "status"]),
        "http_request_size_bytes": ("summary", ["handler"]),
        "http_response_size_bytes": ("summary", ["handler"]),
        "http_request_duration_highr_seconds": ("histogram", ["le"]),
        "http_request_duration_seconds": ("histogram", ["handler", "le", "method"]),
    }
    buckets = [
        s.labels["le"]
        for family in registry.collect()
        if family.name == "http_request_duration_seconds"
        for s in family.samples
        if s.name.endswith("_bucket")
    ]
    assert buckets == ["0.1", "0.5", "1.0", "+Inf"]


async def test_an_exception_is_counted_as_a_500(
    client: httpx.AsyncClient, registry: CollectorRegistry
) -> None:
    response = await client.get("/boom")

    assert response.status_code == 500
    assert sample(registry, "http_requests_total", handler="/boom", method="GET", status="500") == 1


async def test_untemplated_404s_and_metrics_are_not_counted(
    client: httpx.AsyncClient, registry: CollectorRegistry
) -> None:
    assert (await client.get("/no/such/route")).status_code == 404
    assert (await client.get("/metrics")).status_code == 200

    assert sample(registry, "http_request_duration_highr_seconds_count") == 0
    assert not [
        s for family in registry.collect() for s in family.samples if s.name.endswith("_total")
    ]


async def test_a_405_a_redirect_and_a_mount_are_counted_as_the_instrumentator_did(
    registry: CollectorRegistry, tmp_path: Any
) -> None:
    (tmp_path / "app.css").write_text("body {}")
    app = make_app(registry)
    app.mount("/static", StaticFiles(directory=tmp_path), name="static")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://edge.test") as http:
        assert (await http.delete("/items/1")).status_code == 405
        assert (await http.get("/items/1/")).status_code == 307
        assert (await http.get("/static/app.css")).status_code == 200

    def count(handler: str, method: str, status: str) -> float:
        return sample(
            registry, "http_requests_total", handler=handler, method=method, status=status
        )

    assert count("/items/{item_id}", "DELETE", "405") == 1
    assert count("/items/1/", "GET", "307") == 1  # the path itself, as before
    assert count("/static", "GET", "200") == 1


# Body size limit


async def test_a_body_announced_over_the_limit_is_413(
    client: httpx.AsyncClient, registry: CollectorRegistry
) -> None:
    response = await client.post("/items", content=b"{}" + b" " * LIMIT)

    assert response.status_code == 413
    assert response.json() == {"detail": f"request body exceeds the limit of {LIMIT} bytes"}
    assert response.headers["content-type"] == "application/json"
    assert (
        sample(registry, "http_requests_total", handler="/items", method="POST", status="413") == 1
    )


async def test_a_chunked_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b" " * 300

    raw = await client.post("/raw", content=chunks())  # the app reads it: raw path
    items = await client.post("/items", content=chunks())  # read here first

    assert (raw.status_code, items.status_code) == (413, 413)
    assert raw.json() == {"detail": f"request body exceeds the limit of {LIMIT} bytes"}


async def test_a_chunked_body_within_the_limit_passes(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": '
        yield b'"chunked"}'

    response = await client.post(
        "/items", content=chunks(), headers={"Content-Type": "application/json"}
    )

    assert response.json() == {"name": "chunked"}


async def test_without_a_limit_any_size_passes(registry: CollectorRegistry) -> None:
    transport = httpx.ASGITransport(app=make_app(registry))
    async with httpx.AsyncClient(transport=transport, base_url="http://edge.test") as http:
        response = await http.post("/raw", content=b"x" * (LIMIT * 4))

    assert len(response.text) == LIMIT * 4


# Unstorable text


async def test_a_nul_in_the_path_is_422_naming_the_parameter(client: httpx.AsyncClient) -> None:
    response = await client.get("/items/a%00b")

    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "loc": ["path", "item_id"],
                "msg": "String should not contain a NUL character",
                "type": "string_unstorable",
            }
        ]
    }


async def test_a_nul_in_the_query_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/items/1", params={"q": "a\x00b"})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "q"]


@pytest.mark.parametrize(
    ("body", "loc", "message"),
    [
        (b'{"name": "a\\u0000b"}', ["body", "name"], "a NUL character"),
        (b'{"tags": ["ok", "\\ud800"]}', ["body", "tags", 1], "an unpaired surrogate"),
    ],
)
async def test_unstorable_text_in_a_json_body_is_422(
    client: httpx.AsyncClient, body: bytes, loc: list[Any], message: str
) -> None:
    response = await client.post(
        "/items", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"loc": loc, "msg": f"String should not contain {message}", "type": "string_unstorable"}
    ]


async def test_a_body_split_in_chunks_is_checked_whole(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "a\\u'
        yield b'0000b"}'

    response = await client.post(
        "/items", content=chunks(), headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422


async def test_a_raw_body_path_gets_its_exact_bytes(client: httpx.AsyncClient) -> None:
    body = b'{"name": "a\\u0000b"}'

    response = await client.post("/raw", content=body)

    assert (response.status_code, response.content) == (200, body)


async def test_an_ordinary_body_reaches_the_endpoint(client: httpx.AsyncClient) -> None:
    response = await client.post("/items", json={"name": "fine \\u0000 as text"})

    assert response.json() == {"name": "fine \\u0000 as text"}


# Other scopes


async def test_websocket_and_lifespan_scopes_pass_through(registry: CollectorRegistry) -> None:
    seen: list[tuple[Scope, str | None]] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope, REQUEST_ID.get()))
        await send(await receive())

    edge = RequestEdge(inner, registry=registry, max_body_bytes=1)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    for message in ({"type": "lifespan.startup"}, {"type": "websocket.connect"}):

        async def receive(message: Message = message) -> Message:
            return message

        kind = message["type"].split(".")[0]
        scope: Scope = {"type": kind}
        if kind == "websocket":
            scope.update(path="/ws\x00", headers=[(b"x-request-id", b"ws-1")])
        await edge(scope, receive, send)

    assert sent == [{"type": "lifespan.startup"}, {"type": "websocket.connect"}]
    assert seen[0][0] == {"type": "lifespan"}
    assert seen[1][0]["headers"] == [(b"x-request-id", b"ws-1")]
    assert seen[1][1] == "ws-1"  # a websocket's log lines carry an id as well
    assert sample(registry, "http_request_duration_highr_seconds_count") == 0


async def test_the_edge_answers_json_the_way_the_apps_did(client: httpx.AsyncClient) -> None:
    response = await client.get("/items/%00")

    assert json.loads(response.content) == response.json()
    assert response.headers["content-length"] == str(len(response.content))
