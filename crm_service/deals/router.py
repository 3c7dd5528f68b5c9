from crm_service.deals.schemas import DealCreate, DealRead, DealUpdate
from crm_service.deals.service import deal_service
from crm_service.records.router import record_router

router = record_router(
    deal_service,
    DealCreate,
    DealUpdate,
    DealRead,
    create_details=(
        "Without a pipeline or a stage (`crm_pipeline_id`/`crm_stage_id`, or "
        "`crm_pipeline_name`/`crm_stage_name`) the deal goes to the team's default pipeline "
        "and its first stage; a stage alone picks its pipeline. A pipeline or stage that is "
        "not the team's is 422. `status` defaults to `open`; `size` (or `amount`) has at "
        "most 2 decimals. `crm_source_id` is kept as given."
    ),
)
