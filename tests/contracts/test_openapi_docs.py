"""Both APIs document their errors, credentials and the webhook intake in /openapi.json."""

from __future__ import annotations

from typing import Any

import pytest

from crm_service.main import create_app as create_crm
from omni_service.main import create_app as create_omni
from shared_contracts.events import EventType

METHODS = ("get", "put", "post", "patch", "delete")


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, item[method])
        for path, item in document["paths"].items()
        for method in METHODS
        if method in item
    ]


def error_ref(operation: dict[str, Any], status: str) -> str | None:
    response = operation["responses"].get(status)
    if response is None:
        return None
    ref: str = response["content"]["application/json"]["schema"]["$ref"]
    return ref


@pytest.fixture(scope="module", params=["crm", "omni"])
def document(request: pytest.FixtureRequest) -> dict[str, Any]:
    app = create_crm() if request.param == "crm" else create_omni()
    openapi: dict[str, Any] = app.openapi()
    return openapi


def test_every_error_an_operation_can_answer_is_documented_with_its_schema(
    document: dict[str, Any],
) -> None:
    assert "Error" in document["components"]["schemas"]
    for method, path, operation in operations(document):
        where = f"{method.upper()} {path}"
        if operation.get("security"):
            assert error_ref(operation, "401") == "#/components/schemas/Error", where
        if "{" in path:
            assert error_ref(operation, "404") is not None, where
        if "requestBody" in operation:
            assert error_ref(operation, "413") is not None, where
            assert error_ref(operation, "422") is not None, where


def test_credentials_are_security_schemes_on_the_operations_that_need_them(
    document: dict[str, Any],
) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["bearerToken"]["description"],
    }
    assert schemes["adminKey"]["in"] == "header" and schemes["adminKey"]["name"] == "X-Admin-Key"
    for method, path, operation in operations(document):
        needed = {name for entry in operation.get("security", []) for name in entry}
        if path.startswith("/admin"):
            assert needed == {"adminKey"}, (method, path)
        elif path.startswith("/api/v3.1/teams/company_token"):
            assert needed == {"crmApiKey"}, (method, path)
        elif path.startswith("/api/"):
            assert "bearerToken" in needed, (method, path)


def test_operations_have_summaries_and_descriptions(document: dict[str, Any]) -> None:
    undocumented = [
        f"{method.upper()} {path}: no {field}"
        for method, path, operation in operations(document)
        for field in ("summary", "description")
        if not str(operation.get(field, "")).strip()
    ]
    assert not undocumented, "\n".join(undocumented)


def test_the_webhook_intake_documents_its_body_and_signature_headers() -> None:
    document = create_omni().openapi()
    operation = document["paths"]["/webhooks/crm"]["post"]
    headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    components = document["components"]["schemas"]
    types = {
        components[ref["$ref"].rsplit("/", 1)[1]]["properties"]["type"]["const"]
        for ref in body["oneOf"]
    }
    assert types == {str(event_type) for event_type in EventType}
    assert error_ref(operation, "401") is not None
