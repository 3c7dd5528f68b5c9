"""Refuse text PostgreSQL cannot store, for every route of both services at once.

A NUL character (``\\x00``) or an unpaired UTF-16 surrogate (``"\\ud800"`` in JSON
decodes to one in Python) in a path, query or JSON body would otherwise reach the
driver and fail there, as a 500. The request edge (:mod:`service_kit.edge`) answers 422
in FastAPI's error shape with the field's ``loc`` instead, before any endpoint runs, with
the checks here.

They stay off the hot path: a body is looked at only when its raw bytes could hold such a
character (a ``\\u0000`` or ``\\ud…`` escape; a raw NUL or a raw surrogate is not valid
JSON or UTF-8 and FastAPI refuses it already), and the query only when it holds
``%00`` or a NUL. Invalid UTF-8 in a URL is decoded with replacement characters, which
are harmless. Paths in ``raw_body_paths`` (a signed webhook, whose receiver needs the
exact bytes and checks its own document with ``find_bad_text``) keep their body
untouched.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import Scope

_SUSPECT_BODY = re.compile(rb"\\u0000|\\u[dD]|\x00")
_SURROGATE_OR_NUL = re.compile("[\x00\ud800-\udfff]")
Location = list[str | int]


def bad_text_reason(value: str) -> str | None:
    """Why ``value`` cannot be stored, or None when it can."""
    found = _SURROGATE_OR_NUL.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return "String should not contain a NUL character"
    return "String should not contain an unpaired surrogate"


def find_bad_text(value: Any, location: Location) -> tuple[Location, str] | None:
    """The location and reason of the first string (or object key) in a decoded JSON
    value that cannot be stored."""
    if isinstance(value, str):
        reason = bad_text_reason(value)
        return None if reason is None else (location, reason)
    if isinstance(value, dict):
        for key, item in value.items():
            reason = bad_text_reason(key)
            if reason is not None:
                return [*location, key.encode("utf-8", "backslashreplace").decode()], reason
            found = find_bad_text(item, [*location, key])
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = find_bad_text(item, [*location, index])
            if found is not None:
                return found
    return None


@lru_cache(maxsize=512)
def _template_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{([^}:]+)(?::[^}]*)?\}", template)
    pattern = "".join(
        re.escape(part) if index % 2 == 0 else f"(?P<{part}>[^/]+)"
        for index, part in enumerate(parts)
    )
    return re.compile(pattern, re.DOTALL)


def validation_error_body(location: Location, reason: str) -> bytes:
    safe_location = [
        part.encode("utf-8", "backslashreplace").decode() if isinstance(part, str) else part
        for part in location
    ]
    detail = [{"loc": safe_location, "msg": reason, "type": "string_unstorable"}]
    return json.dumps({"detail": detail}).encode()


def bad_text_in_path(scope: Scope) -> tuple[Location, str] | None:
    """The location and reason of a NUL or lone surrogate in the request's path."""
    reason = bad_text_reason(scope["path"])
    if reason is None:
        return None
    # Name the parameter from the documented path templates (only on this slow path).
    app = scope.get("app")
    openapi = getattr(app, "openapi", None)
    templates = openapi().get("paths", {}) if callable(openapi) else {}
    for template in templates:
        match = _template_pattern(template).fullmatch(scope["path"])
        if match is None:
            continue
        for name, value in match.groupdict().items():
            if bad_text_reason(value) is not None:
                return ["path", name], reason
    return ["path"], reason


def bad_text_in_query(scope: Scope) -> tuple[Location, str] | None:
    """The location and reason of a NUL in the query (looked for only when the raw query
    holds ``%00`` or a NUL)."""
    query: bytes = scope.get("query_string", b"")
    if b"%00" not in query and b"\x00" not in query:
        return None
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        reason = bad_text_reason(name) or bad_text_reason(value)
        if reason is not None:
            return ["query", name.replace("\x00", "\\x00")], reason
    return None


def bad_text_in_body(body: bytes) -> tuple[Location, str] | None:
    """The location and reason of the first unstorable string of a JSON body, decoded only
    when its raw bytes could hold one (a ``\\u0000`` or ``\\ud…`` escape)."""
    if not _SUSPECT_BODY.search(body):
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return None  # not JSON: the endpoint's own parsing answers
    return find_bad_text(document, ["body"])
