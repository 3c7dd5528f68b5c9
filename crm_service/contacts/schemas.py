from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from crm_service.contacts.phones import normalize_phone
from shared_contracts.events import Timestamp

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]


class ContactCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    first_name: Name
    last_name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=255)] | None = (
        None
    )
    phone: str | None = Field(default=None, max_length=64)
    email: str | None = Field(default=None, max_length=320)

    @field_validator("phone")
    @classmethod
    def _phone_is_a_number(cls, value: str | None) -> str | None:
        if value is not None and normalize_phone(value) is None:
            raise ValueError("phone is not a valid phone number")
        return value

    @field_validator("email")
    @classmethod
    def _email_shape(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.match(value):
            raise ValueError("email is not a valid address")
        return value


class ContactRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    first_name: str
    last_name: str | None
    phone: str | None
    phone_e164: str | None
    email: str | None
    created_at: Timestamp


class ContactList(BaseModel):
    items: list[ContactRead]
