from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.deals.models import Deal, DealContact
from crm_service.deals.schemas import DealCreate, DealRead, DealUpdate
from crm_service.errors import NotFound
from crm_service.pipelines.models import Pipeline, Stage
from crm_service.pipelines.service import pipeline_service
from crm_service.records.service import RecordContext, RecordService
from service_kit.ids import uuid4_hex
from shared_contracts.events import DealData, DealDeleteData, NamedRef, RecordKind


class DealService(RecordService[Deal]):
    kind = RecordKind.DEAL
    model = Deal
    link_model = DealContact
    link_column = "deal_id"
    preview_fields = frozenset({"name", "stage_id", "pipeline_id", "size", "status"})
    url_segment = "deals"
    # Reads (the placement), then the one statement; nothing else is written.
    creates_in_one_statement = True

    async def create(
        self, session: AsyncSession, context: RecordContext, body: DealCreate
    ) -> DealRead:
        team_id = context.caller.team.id
        pipeline, stage = await pipeline_service.resolve(
            session,
            team_id,
            pipeline_id=body.crm_pipeline_id,
            stage_id=body.crm_stage_id,
            pipeline_name=body.crm_pipeline_name,
            stage_name=body.crm_stage_name,
            default=context.caller.default_placement,
        )
        deal, contact_ids = await self.insert(
            session,
            context,
            body,
            lambda deal: self.event_data(context, deal, pipeline, stage),
            **self.deal_fields(body, pipeline, stage),
        )
        return self.read(context, deal, pipeline, stage, contact_ids)

    @staticmethod
    def deal_fields(body: DealCreate, pipeline: Pipeline, stage: Stage) -> dict[str, Any]:
        """The columns of a new deal beyond those every record has."""
        return {
            "slug": uuid4_hex(),
            "pipeline_id": pipeline.id,
            "stage_id": stage.id,
            "size": body.size,
            "status": body.status,
            "crm_source_id": body.crm_source_id,
        }

    async def fetch(self, session: AsyncSession, context: RecordContext, deal_id: int) -> DealRead:
        deal, pipeline, stage = await self._load(session, context.caller.team.id, deal_id)
        contact_ids = await self.contact_ids(session, deal.id)
        return self.read(context, deal, pipeline, stage, contact_ids)

    async def update(
        self, session: AsyncSession, context: RecordContext, deal_id: int, body: DealUpdate
    ) -> DealRead:
        team_id = context.caller.team.id
        given: dict[str, Any] = body.model_dump(include=body.model_fields_set)
        self.require_values(given, "name", "status")
        deal, pipeline, stage = await self._load(session, team_id, deal_id, for_update=True)
        self.check_set_once(deal, given)
        changes: dict[str, Any] = {
            field: given[field]
            for field in ("name", "size", "status", "crm_source_id")
            if field in given
        }
        if any(
            given.get(field) is not None
            for field in ("crm_pipeline_id", "crm_stage_id", "crm_pipeline_name", "crm_stage_name")
        ):
            pipeline, stage = await self._move(session, team_id, deal, given, pipeline, stage)
            changes.update(pipeline_id=pipeline.id, stage_id=stage.id)
        preview_changed = self.apply_changes(deal, changes)
        await self.link_contacts(
            session, team_id, deal.id, given.get("crm_lead_ids"), given.get("contact_id")
        )
        await session.flush()
        if preview_changed:
            await self.updated(
                session, context, deal, lambda: self.event_data(context, deal, pipeline, stage)
            )
        contact_ids = await self.contact_ids(session, deal.id)
        return self.read(context, deal, pipeline, stage, contact_ids)

    async def _move(
        self,
        session: AsyncSession,
        team_id: int,
        deal: Deal,
        given: dict[str, Any],
        pipeline: Pipeline,
        stage: Stage,
    ) -> tuple[Pipeline, Stage]:
        pipeline_id = given.get("crm_pipeline_id")
        pipeline_name = given.get("crm_pipeline_name")
        stage_given = given.get("crm_stage_id") is not None or given.get("crm_stage_name")
        same_pipeline = pipeline_id == deal.pipeline_id or (
            pipeline_name is not None and pipeline_name.casefold() == pipeline.name.casefold()
        )
        if not stage_given and same_pipeline:
            return pipeline, stage  # naming the current pipeline keeps the current stage
        # A stage name alone is looked up in the deal's pipeline first, then in the others.
        return await pipeline_service.resolve(
            session,
            team_id,
            pipeline_id=pipeline_id,
            stage_id=given.get("crm_stage_id"),
            pipeline_name=pipeline_name,
            stage_name=given.get("crm_stage_name"),
            prefer_pipeline_id=deal.pipeline_id,
        )

    async def _load(
        self, session: AsyncSession, team_id: int, deal_id: int, *, for_update: bool = False
    ) -> tuple[Deal, Pipeline, Stage]:
        query = (
            select(Deal, Pipeline, Stage)
            .join(Pipeline, Pipeline.id == Deal.pipeline_id)
            .join(Stage, Stage.id == Deal.stage_id)
            .where(Deal.id == deal_id, Deal.team_id == team_id, Deal.deleted_at.is_(None))
        )
        if for_update:
            query = query.with_for_update(of=Deal)
        row = (await session.execute(query)).one_or_none()
        if row is None:
            raise NotFound(f"deal {deal_id} not found")
        deal, pipeline, stage = row
        return deal, pipeline, stage

    def event_data(
        self, context: RecordContext, deal: Deal, pipeline: Pipeline, stage: Stage
    ) -> DealData:
        return DealData(
            **self.state_fields(context, deal),
            slug=deal.slug,
            stage=NamedRef(id=stage.id, name=stage.name),
            pipeline=NamedRef(id=pipeline.id, name=pipeline.name),
            size=deal.size,
            status=deal.status,
        )

    def delete_data(self, record: Deal, context: RecordContext) -> DealDeleteData:
        return DealDeleteData(**self.identity_fields(context, record), slug=record.slug)

    def read(
        self,
        context: RecordContext,
        deal: Deal,
        pipeline: Pipeline,
        stage: Stage,
        contact_ids: list[int],
    ) -> DealRead:
        return DealRead(
            **self.read_fields(context, deal, contact_ids),
            slug=deal.slug,
            crm_pipeline_id=pipeline.id,
            crm_stage_id=stage.id,
            pipeline=NamedRef(id=pipeline.id, name=pipeline.name),
            stage=NamedRef(id=stage.id, name=stage.name),
            size=deal.size,
            status=deal.status,
            crm_source_id=deal.crm_source_id,
        )


deal_service = DealService()
