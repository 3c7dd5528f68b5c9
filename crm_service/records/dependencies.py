from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from crm_service.dependencies import SettingsDep
from crm_service.records.service import RecordContext
from crm_service.teams.auth import CurrentCaller
from crm_service.teams.features import PrefetchedFlags


async def record_context(
    request: Request, caller: CurrentCaller, settings: SettingsDep
) -> RecordContext:
    flags = PrefetchedFlags(caller.team.id, caller.flags, request.app.state.flag_cache)
    return RecordContext(caller=caller, settings=settings, flag_cache=flags)


RecordContextDep = Annotated[RecordContext, Depends(record_context)]
