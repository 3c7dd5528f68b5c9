"""Error responses in ``/openapi.json``, documented once for every operation.

Every failure of both APIs is a JSON ``{"detail": ...}``: a message, or FastAPI-style
field errors (:mod:`service_kit.errors`). Which ones an operation can answer follows from
what it takes, so they are derived rather than listed per route: 401 where it has a
security scheme, 404 where its path names an object, 413 and 422 where it takes a body
(422 also for bad parameters), 409 where the service says so (``conflicts``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI

ERROR_SCHEMA_NAME = "Error"
ERROR_SCHEMA: dict[str, Any] = {
    "title": ERROR_SCHEMA_NAME,
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {
            "anyOf": [
                {"type": "string", "description": "what went wrong, for a person"},
                {
                    "type": "array",
                    "description": "field errors, as FastAPI's validation errors",
                    "items": {"$ref": "#/components/schemas/ValidationError"},
                },
            ]
        }
    },
}
DESCRIPTIONS = {
    "401": "Missing or wrong credentials (or webhook signature).",
    "404": "No such object for this tenant (another tenant's object included).",
    "409": "Conflicts with the current state (e.g. the same Idempotency-Key in flight).",
    "413": "Body larger than the service's limit.",
    "422": "Invalid input; `detail` names each field.",
}
METHODS = ("get", "put", "post", "patch", "delete")


def install_error_docs(app: FastAPI, *, conflicts: Iterable[tuple[str, str]] = ()) -> None:
    """``conflicts``: (method, path) pairs that can answer 409."""
    conflicting = {(method.lower(), path) for method, path in conflicts}
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = build()
        _add_errors(document, conflicting)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _add_errors(document: dict[str, Any], conflicting: set[tuple[str, str]]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas[ERROR_SCHEMA_NAME] = ERROR_SCHEMA
    schemas.setdefault("ValidationError", _validation_error_schema())
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            statuses = []
            if operation.get("security") or path == "/webhooks/crm":
                statuses.append("401")
            if "{" in path:
                statuses.append("404")
            if (method, path) in conflicting:
                statuses.append("409")
            if "requestBody" in operation:
                statuses += ["413", "422"]
            elif operation.get("parameters"):
                statuses.append("422")
            responses = operation.setdefault("responses", {})
            for status in statuses:
                responses[status] = {
                    "description": DESCRIPTIONS[status],
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA_NAME}"}
                        }
                    },
                }


def _validation_error_schema() -> dict[str, Any]:
    return {
        "title": "ValidationError",
        "type": "object",
        "required": ["loc", "msg", "type"],
        "properties": {
            "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
            "msg": {"type": "string"},
            "type": {"type": "string"},
        },
    }
