"""The event catalog: one envelope model per event type, and their JSON Schema.

Built from the payload models of :mod:`shared_contracts.events`, so the catalog cannot
drift from what the CRM emits and Omni parses. The CRM's OpenAPI document lists the six
types in its ``webhooks`` section with these schemas; ``crm-parity events schema``
writes :func:`events_json_schema`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import models_json_schema

from shared_contracts.events import PAYLOAD_MODELS, EventType, Timestamp, split_event_type

SCHEMA_ID = "https://crm-parity.example/schemas/events.json"
DESCRIPTIONS = {
    "create": "A bot or AI {kind} was created in a chat room: its full display state.",
    "update": "A preview field of the {kind} changed (name, stage/status, …): its full "
    "display state, with a higher version.",
    "delete": "The {kind} was deleted: its identity, room and the version the delete gave "
    "it; the room returns to its call to action.",
}


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _model_name(event_type: EventType) -> str:
    kind, action = split_event_type(event_type)
    return f"{kind.value.capitalize()}{action.value.capitalize()}Event"


def _envelope_model(event_type: EventType) -> type[BaseModel]:
    kind, action = split_event_type(event_type)
    model: type[BaseModel] = create_model(
        _model_name(event_type),
        __base__=_Envelope,
        __doc__=DESCRIPTIONS[action.value].format(kind=kind.value),
        type=(Literal[event_type.value], Field(description="the event type")),  # type: ignore[arg-type]
        timestamp=(Timestamp, Field(description="when the event was built, RFC 3339 UTC")),
        data=(PAYLOAD_MODELS[event_type], Field(description=f"the {kind.value}")),
    )
    return model


EVENT_MODELS: dict[EventType, type[BaseModel]] = {
    event_type: _envelope_model(event_type) for event_type in EventType
}


def events_json_schema(ref_template: str = "#/$defs/{model}") -> dict[str, Any]:
    """A JSON Schema (2020-12) that a webhook body matches iff it is one of the six
    events, by its ``type``; the definitions of every envelope and payload under
    ``$defs`` (an OpenAPI document moves them to its components with ``ref_template``)."""
    _, document = models_json_schema(
        [(model, "serialization") for model in EVENT_MODELS.values()],
        ref_template=ref_template,
    )
    definitions = document.get("$defs", {})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "CRM parity webhook events",
        "description": "Bodies of POST {base_url}/webhooks/crm, signed per Standard "
        "Webhooks (webhook-id, webhook-timestamp, webhook-signature headers).",
        "oneOf": [
            {"$ref": ref_template.format(model=model.__name__)} for model in EVENT_MODELS.values()
        ],
        "$defs": definitions,
    }
