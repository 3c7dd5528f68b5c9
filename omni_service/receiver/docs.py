"""OpenAPI of ``POST /webhooks/crm``: its body is read raw (the signature covers the exact
bytes), so FastAPI cannot see it; the body schema (the event catalog both services
share, its definitions under the document's components) and the ``webhook-*`` headers
are added to the document here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from shared_contracts.catalog import events_json_schema

PATH = "/webhooks/crm"
HEADERS = {
    "webhook-id": "The event id; the same on every retry. A second delivery is a duplicate.",
    "webhook-timestamp": "Unix seconds; more than 5 minutes off is refused (401).",
    "webhook-signature": "`v1,<base64 HMAC-SHA256>` entries, space-separated.",
}


def install_webhook_docs(app: FastAPI) -> None:
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = build()
        _describe_receiver(document)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _describe_receiver(document: dict[str, Any]) -> None:
    operation = document.get("paths", {}).get(PATH, {}).get("post")
    if operation is None:
        return
    schema = events_json_schema(ref_template="#/components/schemas/{model}")
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(schema.pop("$defs"))
    body = {key: value for key, value in schema.items() if key not in ("$schema", "$id")}
    operation["parameters"] = [
        {
            "name": name,
            "in": "header",
            "required": True,
            "description": description,
            "schema": {"type": "string"},
        }
        for name, description in HEADERS.items()
    ]
    operation["requestBody"] = {
        "required": True,
        "description": "One of the six event types, as the CRM signs and sends it.",
        "content": {"application/json": {"schema": body}},
    }
