from __future__ import annotations

from fastapi import APIRouter

from crm_service.dependencies import SessionDep
from crm_service.pipelines.schemas import PipelineList, PipelineRead
from crm_service.pipelines.service import pipeline_service
from crm_service.teams.auth import CurrentCaller

router = APIRouter(prefix="/api/v3.1/pipelines", tags=["pipelines"])


@router.get("")
async def list_pipelines(session: SessionDep, caller: CurrentCaller) -> PipelineList:
    """The caller's team's pipelines with their stages in order, the default first.

    A new team has one, "Sales" (New, Qualified, Proposal, Won, Lost). A deal created
    without a pipeline or stage goes to the default pipeline's first stage; the ids and
    names listed here are what `crm_pipeline_id`/`crm_stage_id` (or their names) take.
    """
    pipelines = await pipeline_service.list(session, caller.team.id)
    return PipelineList(items=[PipelineRead.model_validate(pipeline) for pipeline in pipelines])
