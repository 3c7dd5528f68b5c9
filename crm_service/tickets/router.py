from crm_service.records.router import record_router
from crm_service.tickets.schemas import TicketCreate, TicketRead, TicketUpdate
from crm_service.tickets.service import ticket_service

router = record_router(ticket_service, TicketCreate, TicketUpdate, TicketRead)
