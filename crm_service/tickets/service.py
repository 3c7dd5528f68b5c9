from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.records.service import RecordContext, RecordService
from crm_service.teams.service import team_service
from crm_service.tickets.models import Ticket, TicketContact
from crm_service.tickets.schemas import TicketCreate, TicketRead, TicketUpdate
from shared_contracts.events import RecordKind, TicketData, TicketDeleteData


def format_ticket_number(number: int) -> str:
    return f"TCK-{number:06d}"


class TicketService(RecordService[Ticket]):
    kind = RecordKind.TICKET
    model = Ticket
    link_model = TicketContact
    link_column = "ticket_id"
    preview_fields = frozenset({"name", "status", "priority"})
    url_segment = "tickets"

    async def create(
        self, session: AsyncSession, context: RecordContext, body: TicketCreate
    ) -> TicketRead:
        team_id = context.caller.team.id
        number = await team_service.next_ticket_number(session, team_id)
        ticket, contact_ids = await self.insert(
            session,
            context,
            body,
            lambda ticket: self.event_data(context, ticket),
            unique_ticket_id=format_ticket_number(number),
            description=body.description,
            status=body.status,
            priority=body.priority,
        )
        return self.read(context, ticket, contact_ids)

    async def fetch(
        self, session: AsyncSession, context: RecordContext, ticket_id: int
    ) -> TicketRead:
        ticket = await self.get(session, context.caller.team.id, ticket_id)
        return self.read(context, ticket, await self.contact_ids(session, ticket.id))

    async def update(
        self, session: AsyncSession, context: RecordContext, ticket_id: int, body: TicketUpdate
    ) -> TicketRead:
        team_id = context.caller.team.id
        given: dict[str, Any] = body.model_dump(include=body.model_fields_set)
        self.require_values(given, "name", "status", "priority")
        ticket = await self.get(session, team_id, ticket_id, for_update=True)
        self.check_set_once(ticket, given)
        changes: dict[str, Any] = {
            field: given[field]
            for field in ("name", "description", "status", "priority")
            if field in given
        }
        preview_changed = self.apply_changes(ticket, changes)
        await self.link_contacts(
            session, team_id, ticket.id, given.get("crm_lead_ids"), given.get("contact_id")
        )
        await session.flush()
        if preview_changed:
            await self.updated(session, context, ticket, lambda: self.event_data(context, ticket))
        return self.read(context, ticket, await self.contact_ids(session, ticket.id))

    def event_data(self, context: RecordContext, ticket: Ticket) -> TicketData:
        return TicketData(
            **self.state_fields(context, ticket),
            unique_ticket_id=ticket.unique_ticket_id,
            description=ticket.description,
            status=ticket.status,
            priority=ticket.priority,
        )

    def delete_data(self, record: Ticket, context: RecordContext) -> TicketDeleteData:
        return TicketDeleteData(
            **self.identity_fields(context, record), unique_ticket_id=record.unique_ticket_id
        )

    def read(self, context: RecordContext, ticket: Ticket, contact_ids: list[int]) -> TicketRead:
        return TicketRead(
            **self.read_fields(context, ticket, contact_ids),
            unique_ticket_id=ticket.unique_ticket_id,
            description=ticket.description,
            status=ticket.status,
            priority=ticket.priority,
        )


ticket_service = TicketService()
