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
    contact = await contact_service.create(session, caller.team.id, body)
    return ContactRead.model_validate(contact)


@router.get("")
async def find_contacts(
    session: SessionDep,
    caller: CurrentCaller,
    phone: Annotated[str, Query(min_length=1, max_length=64)],
) -> ContactList:
    contacts = await contact_service.find_by_phone(session, caller.team.id, phone)
    return ContactList(items=[ContactRead.model_validate(contact) for contact in contacts])
