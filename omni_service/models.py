"""Every Omni model, imported once so the metadata (and Alembic) sees all tables."""

from omni_service.database import Base
from omni_service.organizations.models import Organization
from omni_service.previews.models import DealPreview, TicketPreview
from omni_service.receiver.models import ReceivedEvent
from omni_service.rooms.models import Message, Room

__all__ = [
    "Base",
    "DealPreview",
    "Message",
    "Organization",
    "ReceivedEvent",
    "Room",
    "TicketPreview",
]
