from __future__ import annotations

import logging
from collections.abc import Iterable

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
            raise Unprocessable("phone is not a valid phone number")
        result = await session.scalars(
            select(Contact)
            .where(Contact.team_id == team_id, Contact.phone_e164 == normalized)
            .order_by(Contact.id)
            .limit(LOOKUP_LIMIT)
        )
        return list(result)

    async def existing_ids(
        self, session: AsyncSession, team_id: int, wanted: Iterable[int]
    ) -> list[int]:
        """The subset of ``wanted`` that are contacts of this team, in the order given.
        Unknown and foreign ids are skipped with a warning (RFC CDTC-S03 ERR-1/2)."""
        requested = list(dict.fromkeys(wanted))
        if not requested:
            return []
        found = set(
            await session.scalars(
                select(Contact.id).where(Contact.team_id == team_id, Contact.id.in_(requested))
            )
        )
        skipped = [contact_id for contact_id in requested if contact_id not in found]
        if skipped:
            log.warning(
                "contact ids skipped: not contacts of this team",
                extra={"team_id": team_id, "skipped_contact_ids": skipped},
            )
        return [contact_id for contact_id in requested if contact_id in found]


contact_service = ContactService()
