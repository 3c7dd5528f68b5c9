"""Every integer a request carries, on either service, has a minimum and a maximum that
fit the database's columns (INTEGER, or BIGINT where the column is one). Walks both
apps' OpenAPI — parameters and request bodies, through ``$ref``s, arrays, unions — so a
new endpoint or field without bounds fails here (issue 8; ``service_kit.bounds``)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI

from crm_service.main import create_app as create_crm_app
from omni_service.main import create_app as create_omni_app
from service_kit.bounds import MAX_INT32, MAX_INT64
from tests.crm.conftest import crm_settings
from tests.omni.factories import omni_settings

# Integers that may go past 32 bits, still within BIGINT: the ids a signed event carries
# (Omni stores them as BIGINT) and 1-based page numbers (never multiplied into SQL past
# the last row).
BIGINT_FIELDS = ("data.id", "data.stage.id", "data.pipeline.id", "query.offset")


def apps() -> dict[str, FastAPI]:
    return {
        "crm": create_crm_app(crm_settings("sqlite+aiosqlite:///:memory:")),
        "omni": create_omni_app(omni_settings("sqlite+aiosqlite:///:memory:")),
    }


def unbounded_integers(
    schema: dict[str, Any], where: str, components: dict[str, Any], seen: frozenset[str]
) -> list[str]:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return []
        return unbounded_integers(components[name], where, components, seen | {name})
    found: list[str] = []
    if schema.get("type") == "integer":
        top = MAX_INT64 if where.endswith(BIGINT_FIELDS) else MAX_INT32
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        if low is None or high is None or low < -top - 1 or high > top:
            found.append(f"{where}: minimum={low} maximum={high}")
    for key in ("anyOf", "oneOf", "allOf"):
        for index, option in enumerate(schema.get(key, [])):
            found += unbounded_integers(option, f"{where}|{index}", components, seen)
    if "items" in schema:
        found += unbounded_integers(schema["items"], f"{where}[]", components, seen)
    for name, property_schema in schema.get("properties", {}).items():
        found += unbounded_integers(property_schema, f"{where}.{name}", components, seen)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        found += unbounded_integers(extra, f"{where}.*", components, seen)
    return found


@pytest.mark.parametrize("service", ["crm", "omni"])
def test_every_request_integer_is_bounded_to_its_column(service: str) -> None:
    document = apps()[service].openapi()
    components = document.get("components", {}).get("schemas", {})
    problems: list[str] = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                where = f"{method.upper()} {path} {parameter['in']}.{parameter['name']}"
                problems += unbounded_integers(
                    parameter.get("schema", {}), where, components, frozenset()
                )
            for media in operation.get("requestBody", {}).get("content", {}).values():
                where = f"{method.upper()} {path} body"
                problems += unbounded_integers(
                    media.get("schema", {}), where, components, frozenset()
                )
    assert problems == []


def test_the_walk_catches_an_unbounded_integer() -> None:
    schema = {"properties": {"ids": {"type": "array", "items": {"$ref": "#/x/Id"}}}}
    components = {"Id": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}]}}
    assert unbounded_integers(schema, "body", components, frozenset()) == [
        "body.ids[]|0: minimum=1 maximum=None"
    ]
