from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared_contracts.signatures import is_valid_secret


def _checked_secret(value: str) -> str:
    if not is_valid_secret(value):
        raise ValueError("must be a Standard Webhooks secret: 'whsec_' + base64 of >= 16 bytes")
    return value


class OrganizationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    company_id: str = Field(min_length=1, max_length=255)
    webhook_secret: str

    _secret = field_validator("webhook_secret")(_checked_secret)


class WebhookSecretUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    webhook_secret: str

    _secret = field_validator("webhook_secret")(_checked_secret)


class OrganizationOut(BaseModel):
    id: int
    name: str
    company_id: str


class OrganizationCreated(OrganizationOut):
    """Returned once, at creation: the token is not stored and cannot be shown again."""

    api_token: str
