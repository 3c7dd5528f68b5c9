from __future__ import annotations

from typing import Annotated

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from shared_contracts.events import Timestamp
from shared_contracts.signatures import is_valid_secret

NonBlank = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]


class TeamCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: NonBlank
    external_company_id: NonBlank


class TeamCreated(BaseModel):
    id: int
    name: str
    external_company_id: str
    api_key: str
    access_token: str
    expires_in: int


class TokenRequest(BaseModel):
    sso_id: NonBlank


class TokenIssued(BaseModel):
    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - the scheme name, not a secret
    expires_in: int


class OmnichannelLinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: AnyHttpUrl
    public_url: AnyHttpUrl
    webhook_secret: str = Field(min_length=1, max_length=512)
    api_token: str = Field(min_length=1, max_length=1024)

    @field_validator("webhook_secret")
    @classmethod
    def _secret_format(cls, value: str) -> str:
        if not is_valid_secret(value):
            raise ValueError("webhook_secret must be 'whsec_' + base64 of at least 16 bytes")
        return value


class OmnichannelLinkOut(BaseModel):
    """The link as stored; the secret and the token are never echoed back."""

    team_id: int
    base_url: str
    public_url: str
    secret_rotated_at: Timestamp | None
    updated_at: Timestamp


class FeatureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool


class FeatureOut(BaseModel):
    team_id: int
    flag: str
    enabled: bool
    updated_at: Timestamp
