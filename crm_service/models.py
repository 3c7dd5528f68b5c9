"""Every CRM model, imported once so the metadata (and Alembic) sees all tables."""

from crm_service.contacts.models import Contact
from crm_service.database import Base
from crm_service.deals.models import Deal, DealContact
from crm_service.events.models import DeliveryAttempt, OutboxEvent
from crm_service.idempotency.models import IdempotencyKey
from crm_service.pipelines.models import Pipeline, Stage
from crm_service.teams.models import CompanyToken, OmnichannelLink, Team, TeamFeature
from crm_service.tickets.models import Ticket, TicketContact
from crm_service.timeline.models import Note

__all__ = [
    "Base",
    "CompanyToken",
    "Contact",
    "Deal",
    "DealContact",
    "DeliveryAttempt",
    "IdempotencyKey",
    "Note",
    "OmnichannelLink",
    "OutboxEvent",
    "Pipeline",
    "Stage",
    "Team",
    "TeamFeature",
    "Ticket",
    "TicketContact",
]
