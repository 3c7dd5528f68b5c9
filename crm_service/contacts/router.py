from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from crm_service.contacts.schemas import ContactCreate, ContactList, ContactRead
from crm_service.contacts.service import contact_service
from crm_service.dependencies import SessionDep
from crm_service.teams.auth import CurrentCaller

router = APIRouter(prefix="/api/v3.1/contacts", tags=["contacts"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_contact(
    body: ContactCreate, session: SessionDep, caller: CurrentCaller
) -> ContactRead:
    """Create a contact (a lead) in the caller's team and answer 201 with it.

    Only `first_name` is required. A `phone` must be a possible phone number; it is kept
    as given and also stored normalised to E.164 (`phone_e164`), which is what the phone
    lookup matches. A malformed phone or email is 422.
    """
    contact = await contact_service.create(session, caller.team.id, body)
    return ContactRead.model_validate(contact)


@router.get("")
async def find_contacts(
    session: SessionDep,
    caller: CurrentCaller,
    phone: Annotated[str, Query(min_length=1, max_length=64)],
) -> ContactList:
    """The team's contacts with this phone number, oldest first (at most 100).

    What the chatbot calls to find the `crm_lead_ids` of a new deal or ticket. The number
    is normalised before matching, so `+62 812-3456-7890`, `0812-3456-7890` and
    `6281234567890` find the same contacts (a leading 0 means an Indonesian number). No
    match is an empty list; a value that is not a phone number is 422.
    """
    contacts = await contact_service.find_by_phone(session, caller.team.id, phone)
    return ContactList(items=[ContactRead.model_validate(contact) for contact in contacts])
