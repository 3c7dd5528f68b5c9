from crm_service.deals.schemas import DealCreate, DealRead, DealUpdate
from crm_service.deals.service import deal_service
from crm_service.records.router import record_router

router = record_router(deal_service, DealCreate, DealUpdate, DealRead)
