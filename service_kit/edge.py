"""The one ASGI layer every request of both APIs passes, in place of four middlewares.

:class:`RequestEdge` does, in this order:

1. **Request id.** The caller's ``X-Request-ID`` when it is a short token
   (:func:`service_kit.logs.valid_request_id`), else a new one (a UUID4's hex, with a
   warning when the caller's was refused). It is put in :data:`service_kit.logs.REQUEST_ID`
   (so every log line of the request carries it), in the request's headers the app sees,
   and appended to the response's headers. Websocket connections get an id too.
2. **HTTP metrics**, in the service's registry: ``http_requests_total`` (``method``,
   ``status``, ``handler``), ``http_request_duration_seconds`` (``method``, ``handler``),
   ``http_request_duration_highr_seconds`` (no labels), ``http_request_size_bytes`` and
   ``http_response_size_bytes`` (``handler``; the Content-Length headers, 0 without one).
   ``handler`` is the route's template (``/api/v3.1/deals/{record_id}``), status the exact
   code (500 for an exception no response was sent for). A request no route matches (an
   untemplated 404) and ``/metrics`` are not counted. These are the names, labels,
   buckets and help texts prometheus-fastapi-instrumentator gave them.
3. **Body size limit** (``max_body_bytes``): 413 when Content-Length announces more, or
   when a streamed (chunked) body turns out bigger, before the endpoint sees it.
4. **Unstorable text** (:mod:`service_kit.request_guard`): 422 for a NUL or a lone
   surrogate in the path, the query or a JSON body; ``raw_body_paths`` keep their body
   untouched.

The route template is read from ``scope["route"]``, which the router sets once it picked
the route; only requests it did not route (refused here, 404s, redirects, mounts, plain
Starlette routes such as ``/docs``) match the app's routes again, as the instrumentator
did for every request. Label children are cached per (handler, method, status).

It is installed with ``app.add_middleware`` (:func:`install_request_edge`), so it wraps
every other middleware and the router; only Starlette's ``ServerErrorMiddleware`` is
outside it, and an exception passing through is counted as a 500.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable
from time import perf_counter
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram, Summary
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service_kit.ids import uuid4_hex
from service_kit.logs import REQUEST_ID, valid_request_id
from service_kit.metrics import METRICS_PATH
from service_kit.request_guard import (
    Location,
    bad_text_in_body,
    bad_text_in_path,
    bad_text_in_query,
    validation_error_body,
)

logger = logging.getLogger(__name__)

FAILED_VALIDATION_MESSAGE = (
    "Generated new request ID (%s), since request header value failed validation"
)
_REQUEST_ID = b"x-request-id"
_CONTENT_LENGTH = b"content-length"
_TRANSFER_ENCODING = b"transfer-encoding"
_WITHOUT_BODY = frozenset(("GET", "HEAD"))
_JSON_HEADER = (b"content-type", b"application/json")

LATENCY_HIGHR_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 7.5,
    10, 30, 60, float("inf"),
)  # fmt: skip
LATENCY_LOWR_BUCKETS = (0.1, 0.5, 1, float("inf"))
_Children = tuple[Any, Any, Any, Any]  # requests, duration, request size, response size


class HttpMetrics:
    """The HTTP metric families of one registry, created once per registry (any number of
    apps of one process share them), with their label children cached."""

    _of: weakref.WeakKeyDictionary[CollectorRegistry, HttpMetrics] = weakref.WeakKeyDictionary()

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "http_requests_total",
            "Total number of requests by method, status and handler.",
            ("method", "status", "handler"),
            registry=registry,
        )
        self.request_size = Summary(
            "http_request_size_bytes",
            "Content length of incoming requests by handler. "
            "Only value of header is respected. Otherwise ignored. "
            "No percentile calculated. ",
            ("handler",),
            registry=registry,
        )
        self.response_size = Summary(
            "http_response_size_bytes",
            "Content length of outgoing responses by handler. "
            "Only value of header is respected. Otherwise ignored. "
            "No percentile calculated. ",
            ("handler",),
            registry=registry,
        )
        self.duration_highr = Histogram(
            "http_request_duration_highr_seconds",
            "Latency with many buckets but no API specific labels. "
            "Made for more accurate percentile calculations. ",
            buckets=LATENCY_HIGHR_BUCKETS,
            registry=registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Latency with only few buckets by handler. "
            "Made to be only used if aggregation by handler is important. ",
            ("method", "handler"),
            buckets=LATENCY_LOWR_BUCKETS,
            registry=registry,
        )
        # (handler, method, status) -> children, or None for a handler not counted.
        self.children: dict[tuple[str, str, int], _Children | None] = {}

    @classmethod
    def of(cls, registry: CollectorRegistry) -> HttpMetrics:
        metrics = cls._of.get(registry)
        if metrics is None:
            metrics = cls._of[registry] = cls(registry)
        return metrics

    def children_of(self, handler: str, method: str, status: int) -> _Children | None:
        if METRICS_PATH in handler:  # the instrumentator's exclusion was a regex search
            found = None
        else:
            code = str(int(status))
            found = (
                self.requests.labels(method, code, handler),
                self.duration.labels(method, handler),
                self.request_size.labels(handler),
                self.response_size.labels(handler),
            )
        self.children[(handler, method, status)] = found
        return found


class _TooLarge(BaseException):
    """Not an ``Exception``: FastAPI turns those into 400 while reading a body."""


class RequestEdge:
    def __init__(
        self,
        app: ASGIApp,
        *,
        registry: CollectorRegistry,
        max_body_bytes: int | None = None,
        raw_body_paths: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.metrics = HttpMetrics.of(registry)
        self.max_body_bytes = max_body_bytes
        self.raw_body_paths = frozenset(raw_body_paths)
        if max_body_bytes is not None:
            self._too_large_body = (
                b'{"detail": "request body exceeds the limit of %d bytes"}' % max_body_bytes
            )
            self._too_large_headers = [
                _JSON_HEADER,
                (_CONTENT_LENGTH, b"%d" % len(self._too_large_body)),
            ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                caller_id = None
                for name, value in scope["headers"]:
                    if name == _REQUEST_ID:
                        caller_id = value
                        break
                _identify(scope, caller_id)
            await self.app(scope, receive, send)
            return

        start = perf_counter()
        # As the app first sees them: routing and mounts change them in the scope.
        app = scope.get("app")
        root_path = scope.get("root_path", "")
        caller_id = None
        request_size: int | None = None  # the first Content-Length, for the metric
        announced = 0  # the largest Content-Length, for the limit
        chunked = False
        for name, value in scope["headers"]:
            if name == _REQUEST_ID:
                if caller_id is None:
                    caller_id = value
            elif name == _CONTENT_LENGTH:
                try:
                    length = int(value)
                except ValueError:
                    length = 0
                if request_size is None:
                    request_size = length
                if length > announced:
                    announced = length
            elif name == _TRANSFER_ENCODING:
                chunked = True
        request_id = _identify(scope, caller_id)

        status: int | None = None
        response_headers: Iterable[tuple[bytes, bytes]] = ()

        async def edge_send(message: Message) -> None:
            nonlocal status, response_headers
            if message["type"] == "http.response.start":
                status = message["status"]
                response_headers = message["headers"] = [
                    *message.get("headers", ()),
                    (_REQUEST_ID, request_id),
                ]
            await send(message)

        try:
            try:
                await self._handle(scope, receive, edge_send, announced, request_size, chunked)
            except _TooLarge:
                if status is None:
                    await self._refuse_too_large(edge_send)
        finally:
            duration = max(perf_counter() - start, 0.0)
            metrics = self.metrics
            handler = _handler(scope, app, root_path)
            if handler is not None:
                code = 500 if status is None else status
                method: str = scope["method"]
                try:
                    children = metrics.children[(handler, method, code)]
                except KeyError:
                    children = metrics.children_of(handler, method, code)
                if children is not None:
                    requests, latency, in_size, out_size = children
                    requests.inc()
                    latency.observe(duration)
                    metrics.duration_highr.observe(duration)
                    in_size.observe(request_size or 0)
                    out_size.observe(_content_length(response_headers))

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        announced: int,
        request_size: int | None,
        chunked: bool,
    ) -> None:
        limit = self.max_body_bytes
        # A body with a Content-Length within the limit cannot outgrow it (the server
        # ends the body there); only a body without one is counted as it streams in.
        watch = False
        if limit is not None:
            if announced > limit:
                await self._refuse_too_large(send)
                return
            watch = request_size is None and (chunked or scope["method"] not in _WITHOUT_BODY)
        found = bad_text_in_path(scope) or bad_text_in_query(scope)
        if found is not None:
            await _refuse_bad_text(send, *found)
            return
        if scope["method"] in _WITHOUT_BODY or scope["path"] in self.raw_body_paths:
            if watch:
                assert limit is not None
                receive = _limited(receive, limit)
            await self.app(scope, receive, send)
            return

        # Read the whole body first (within the limit), look for unstorable text, then
        # hand the same messages to the app.
        messages: list[Message] = []
        received = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body = message.get("body", b"")
            received += len(body)
            if limit is not None and received > limit:
                raise _TooLarge
            if not message.get("more_body", False):
                break
        if len(messages) == 1:
            body = messages[0].get("body", b"")
        else:
            body = b"".join(message.get("body", b"") for message in messages)
        found = bad_text_in_body(body)
        if found is not None:
            await _refuse_bad_text(send, *found)
            return

        async def replay() -> Message:
            if messages:
                return messages.pop(0)
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse_too_large(self, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": self._too_large_headers,
            }
        )
        await send({"type": "http.response.body", "body": self._too_large_body})


def route_with_path(routes: Iterable[Any], path: str) -> Any:
    """The route of ``routes`` whose template is ``path``: what a layer that answers a
    request before routing puts in ``scope["route"]``, so the edge labels it as routed."""
    for route in routes:
        if getattr(route, "path", None) == path:
            return route
    raise LookupError(f"no route {path}")


def install_request_edge(
    app: FastAPI,
    *,
    registry: CollectorRegistry,
    max_body_bytes: int | None = None,
    raw_body_paths: Iterable[str] = (),
) -> None:
    """Install :class:`RequestEdge` around everything the app added so far and the router
    (Starlette's error middleware stays outside); call it once, after any other
    ``add_middleware``."""
    app.add_middleware(
        RequestEdge,
        registry=registry,
        max_body_bytes=max_body_bytes,
        raw_body_paths=tuple(raw_body_paths),
    )


def _identify(scope: Scope, caller_id: bytes | None) -> bytes:
    """Set the request's id from the caller's header (when valid) or a new one; a new one
    replaces the caller's in the request headers. Returns the id's header value."""
    if caller_id:
        if valid_request_id(caller_id):
            REQUEST_ID.set(caller_id.decode("ascii"))
            return caller_id
        generated = uuid4_hex()
        REQUEST_ID.set(generated)
        logger.warning(FAILED_VALIDATION_MESSAGE, generated)
    else:
        generated = uuid4_hex()
        REQUEST_ID.set(generated)
    raw = generated.encode("ascii")
    headers: list[tuple[bytes, bytes]] = []
    replaced = False
    for header in scope["headers"]:
        if header[0] == _REQUEST_ID:
            if not replaced:
                headers.append((_REQUEST_ID, raw))
                replaced = True
        else:
            headers.append(header)
    if not replaced:
        headers.append((_REQUEST_ID, raw))
    scope["headers"] = headers
    return raw


def _limited(receive: Receive, limit: int) -> Receive:
    received = 0

    async def limited_receive() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise _TooLarge
        return message

    return limited_receive


async def _refuse_bad_text(send: Send, location: Location, reason: str) -> None:
    body = validation_error_body(location, reason)
    await send(
        {
            "type": "http.response.start",
            "status": 422,
            "headers": [_JSON_HEADER, (_CONTENT_LENGTH, b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int:
    for name, value in headers:
        if name == _CONTENT_LENGTH:
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def _handler(scope: Scope, app: Any, root_path: str) -> str | None:
    """The template of the route that handled the request, or None for none."""
    route = scope.get("route")
    if (
        route is not None
        and not isinstance(route, Mount)
        and scope.get("root_path", "") == root_path  # not a route inside a mount
    ):
        path = getattr(route, "path", None)
        if isinstance(path, str):
            return path
    return route_template(app, scope["path"], root_path, scope["method"])


def route_template(app: Any, path: str, root_path: str, method: str) -> str | None:
    """Match a request against the app's routes as prometheus-fastapi-instrumentator did:
    the first full match, else the first partial one (405), through mounts; a path the
    router would redirect for a trailing slash is its own handler."""
    routes = getattr(app, "routes", None)
    if not routes:
        return None
    scope: dict[str, Any] = {"type": "http", "path": path, "root_path": root_path}
    scope["method"] = method
    name = _template_in(scope, routes)
    if name is not None:
        return name
    router = getattr(app, "router", None)
    if router is not None and getattr(router, "redirect_slashes", False):
        toggled = path[:-1] if path.endswith("/") else path + "/"
        if toggled and toggled != path and _template_in({**scope, "path": toggled}, routes):
            return path
    return None


def _effective_routes(routes: Iterable[BaseRoute]) -> list[Any]:
    """FastAPI keeps an included router as one object whose routes are its effective
    contexts (each carrying the full, prefixed path)."""
    effective: list[Any] = []
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if callable(contexts):
            for context in contexts():
                starlette_route = getattr(context, "starlette_route", None)
                effective.append(context if starlette_route is None else starlette_route)
        else:
            effective.append(route)
    return effective


def _template_in(scope: dict[str, Any], routes: Iterable[BaseRoute]) -> str | None:
    partial: str | None = None
    for route in _effective_routes(routes):
        match, child_scope = route.matches(scope)
        if match == Match.NONE:
            continue
        if isinstance(route, Mount):
            if not route.routes:
                name = route.path  # an opaque app (static files): the mount is the handler
            else:
                child = _template_in({**scope, **child_scope}, route.routes)
                if child is None:
                    continue
                name = route.path + child
        else:
            path = getattr(route, "path", None)
            if path is None:
                continue
            name = path
        if match == Match.FULL:
            return name
        if partial is None:
            partial = name
    return partial
