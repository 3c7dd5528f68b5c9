"""Pipelines and stages: listing, and resolving what a deal asks for (ids or names)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from crm_service.errors import Unprocessable
from crm_service.pipelines.models import Pipeline, Stage


class PipelineService:
    async def list(self, session: AsyncSession, team_id: int) -> list[Pipeline]:
        result = await session.scalars(
            select(Pipeline)
            .where(Pipeline.team_id == team_id)
            .options(selectinload(Pipeline.stages))
            .order_by(Pipeline.is_default.desc(), Pipeline.id)
        )
        return list(result)

    async def resolve(
        self,
        session: AsyncSession,
        team_id: int,
        *,
        pipeline_id: int | None = None,
        stage_id: int | None = None,
        pipeline_name: str | None = None,
        stage_name: str | None = None,
        default: tuple[Pipeline, Stage] | None = None,
        prefer_pipeline_id: int | None = None,
    ) -> tuple[Pipeline, Stage]:
        """At most one query: the team's pipelines joined with their stages, then pick.

        Nothing asked ⇒ the default pipeline and its first stage (``default`` when the
        caller already read it: no query at all). A stage alone moves the deal to that
        stage's pipeline; a stage name found in several pipelines picks the one in
        ``prefer_pipeline_id`` (the deal's own), else the default pipeline's. Anything not
        of this team ⇒ 422, never 404, so a caller cannot probe other teams' ids.
        """
        pipeline_given = pipeline_id is not None or pipeline_name is not None
        stage_given = stage_id is not None or stage_name is not None
        if not pipeline_given and not stage_given and default is not None:
            return default
        rows = (
            await session.execute(
                select(Pipeline, Stage)
                .join(Stage, Stage.pipeline_id == Pipeline.id)
                .where(Pipeline.team_id == team_id)
                .order_by(Pipeline.is_default.desc(), Pipeline.id, Stage.position)
            )
        ).all()
        if not rows:
            raise Unprocessable("the team has no pipeline")

        def matches_pipeline(pipeline: Pipeline) -> bool:
            if pipeline_id is not None:
                return pipeline.id == pipeline_id
            if pipeline_name is not None:
                return pipeline.name.casefold() == pipeline_name.casefold()
            return True

        def matches_stage(stage: Stage) -> bool:
            if stage_id is not None:
                return stage.id == stage_id
            if stage_name is not None:
                return stage.name.casefold() == stage_name.casefold()
            return True

        candidates = [(p, s) for p, s in rows if matches_pipeline(p)]
        if pipeline_given and not candidates:
            raise Unprocessable(
                "pipeline is not one of this team's pipelines", field="crm_pipeline_id"
            )
        if not pipeline_given and not stage_given:
            candidates = [(p, s) for p, s in candidates if p.id == rows[0][0].id]
        chosen = [(p, s) for p, s in candidates if matches_stage(s)]
        if not chosen:
            raise Unprocessable(
                "stage is not a stage of this team's pipeline"
                if pipeline_given
                else "stage is not one of this team's stages",
                field="crm_stage_id",
            )
        preferred = [(p, s) for p, s in chosen if p.id == prefer_pipeline_id]
        return (preferred or chosen)[0]


pipeline_service = PipelineService()
