from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.contacts.models import Contact
from crm_service.contacts.phones import normalize_phone
from crm_service.contacts.schemas import ContactCreate
from crm_service.errors import Unprocessable

log = logging.getLogger(__name__)
LOOKUP_LIMIT = 100


class ContactService:
    async def create(self, session: AsyncSession, team_id: int, body: ContactCreate) -> Contact:
        contact = Contact(
            team_id=team_id,
            first_name=body.first_name,
            last_name=body.last_name,
            phone=body.phone,
            phone_e164=normalize_phone(body.phone) if body.phone else None,
            email=body.email,
        )
        session.add(contact)
        await session.flush()
        return contact

    async def find_by_phone(self, session: AsyncSession, team_id: int, phone: str) -> list[Contact]:
        normalized = normalize_phone(phone)
        if normalized is None:
            raise Unprocessable(
                "phone is not a valid phone number", field="phone", location="query"
            )
        result = await session.scalars(
            select(Contact)
            .where(Contact.team_id == team_id, Contact.phone_e164 == normalized)
            .order_by(Contact.id)
            .limit(LOOKUP_LIMIT)
        )
        return list(result)


contact_service = ContactService()
