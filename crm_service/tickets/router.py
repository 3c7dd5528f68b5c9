from crm_service.records.router import record_router
from crm_service.tickets.schemas import TicketCreate, TicketRead, TicketUpdate
from crm_service.tickets.service import ticket_service

router = record_router(
    ticket_service,
    TicketCreate,
    TicketUpdate,
    TicketRead,
    create_details=(
        "Each ticket gets the team's next number as `unique_ticket_id` (`TCK-000001`, "
        "`TCK-000002`, ...). `status` defaults to `open` and `priority` to `medium`."
    ),
)
