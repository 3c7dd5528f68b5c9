"""Structured JSON logs for both APIs and the worker: one object per line, with whatever
``extra`` fields a call site passes (event id, record id, team id) and, inside a request,
its request id. Secrets are never passed to a logger.

- :func:`configure_logging` — the root handler and format; uvicorn's own loggers (its
  access and error lines) are routed through it, so a process writes JSON only.
- :data:`REQUEST_ID` — the current request's id, set by the request edge
  (:mod:`service_kit.edge`): the caller's ``X-Request-ID`` when it is a sane token, else a
  new one; it is echoed in the response and put on every log line the request causes
  (``request_id``, by :class:`RequestIdFilter`), uvicorn's access line included.
"""

from __future__ import annotations

import json
import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

REQUEST_ID_HEADER = "X-Request-ID"
MAX_REQUEST_ID_LENGTH = 128
# A short token: letters, digits and ``-_.:`` (bytes, as the header arrives).
_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9\-_.:]{1,%d}" % MAX_REQUEST_ID_LENGTH)
# The id of the request being served in this context (None outside a request).
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
# Record attributes that are not fields of ours (uvicorn adds an ANSI-coloured copy).
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}
# uvicorn's access line: (client address, method, path with query, HTTP version, status).
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status_code")
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            entry.update(zip(_ACCESS_FIELDS, args, strict=True))
        entry.update({key: value for key, value in record.__dict__.items() if key not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on the record (``request_id``), if there is one."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = REQUEST_ID.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


def configure_logging(level: int = logging.INFO) -> None:
    root = logging.getLogger()
    if not any(isinstance(handler.formatter, JsonFormatter) for handler in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        handler.addFilter(RequestIdFilter())
        root.addHandler(handler)
        root.setLevel(level)
    # uvicorn configured its loggers with text handlers before importing the app; send
    # their lines (access and errors) through the JSON handler instead.
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # One line per outgoing request is noise at INFO; failures are logged by our callers.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def valid_request_id(value: str | bytes) -> bool:
    """A caller's id is kept if it is a short token (a UUID, a trace id, ``req-42``):
    nothing that could forge a log field or carry a secret-sized payload."""
    raw = value.encode("latin-1", "replace") if isinstance(value, str) else value
    return _VALID_REQUEST_ID.fullmatch(raw) is not None
