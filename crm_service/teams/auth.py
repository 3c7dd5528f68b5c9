"""Company-token and admin-key authentication.

Tokens and API keys are random 256-bit strings, stored only as SHA-256 digests. A
digest of a high-entropy secret is safe to index and look up: how long an indexed match
takes says nothing an attacker can use without a preimage of the digest, so the lookup
is as good as a constant-time compare. The admin key is compared in constant time.

The token lookup also reads what every write of the team needs (the parity flag and the
default pipeline with its first stage), in the same round trip and the same transaction:
a bot create then costs no extra query for them, and the flag is never stale.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Header, Security
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy import Select, and_, bindparam, func, literal_column, select
from sqlalchemy.dialects.postgresql import psycopg2
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.database import utcnow
from crm_service.dependencies import SessionDep, SettingsDep
from crm_service.errors import Unauthorized
from crm_service.pipelines.models import Pipeline, Stage
from crm_service.teams.features import BOT_AI_CREATION_PARITY
from crm_service.teams.models import CompanyToken, Team, TeamFeature
from service_kit.held_connections import HeldConnections, HeldStatement
from service_kit.security import ADMIN_KEY, BEARER


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


@dataclass(frozen=True)
class Caller:
    """Who is calling: the team (tenant) and the identity the token was issued to, with
    the team's flags and default placement as read together with the token."""

    team: Team
    sso_id: str
    flags: Mapping[str, bool] = field(default_factory=dict)
    default_placement: tuple[Pipeline, Stage] | None = None


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("missing Authorization header")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization must be 'Bearer <company token>'")
    return token.strip()


def _caller_query(*columns: Any) -> Select[Any]:
    """The lookup of a token's caller, selecting ``columns`` of its team, token, parity
    flag and default pipeline with its first stage."""
    first_position = (
        select(func.min(Stage.position))
        .where(Stage.pipeline_id == Pipeline.id)
        .correlate(Pipeline)
        .scalar_subquery()
    )
    return (
        select(*columns)
        .join(CompanyToken, CompanyToken.team_id == Team.id)
        .outerjoin(
            TeamFeature,
            and_(TeamFeature.team_id == Team.id, TeamFeature.name == BOT_AI_CREATION_PARITY),
        )
        .outerjoin(Pipeline, and_(Pipeline.team_id == Team.id, Pipeline.is_default.is_(True)))
        .outerjoin(Stage, and_(Stage.pipeline_id == Pipeline.id, Stage.position == first_position))
        .where(CompanyToken.token_hash == bindparam("token_hash"))
        .order_by(Pipeline.id, Stage.id)
        .limit(1)
    )


def _compiled_with_names(statement: Select[Any]) -> tuple[str, dict[str, Any]]:
    """``statement`` as PostgreSQL SQL with ``:name`` parameters, to sit inside a
    ``text()`` statement (no ``::type`` casts, which ``text()`` would not read as
    parameters), and the values it binds itself (its ``LIMIT``, the flag's name)."""
    dialect = psycopg2.dialect(paramstyle="named")  # type: ignore[no-untyped-call]
    compiled = statement.compile(dialect=dialect)
    return compiled.string, dict(compiled.params)


# Built once: every authenticated request runs it, and building a six-way join (and its
# cache key) costs more CPU than the database spends answering it.
CALLER_QUERY = _caller_query(
    Team, CompanyToken.sso_id, CompanyToken.expires_at, TeamFeature.enabled, Pipeline, Stage
)
# The same lookup in plain columns, for the deal create's fast path (``deals/fast_path.py``),
# which runs it on a held asyncpg connection: what a create needs, no ORM entities.
CALLER_COLUMNS_QUERY = _caller_query(
    Team.id,
    Team.external_company_id,
    Team.caller_version,
    CompanyToken.sso_id,
    CompanyToken.expires_at,
    TeamFeature.enabled,
    Pipeline.id,
    Pipeline.name,
    Stage.id,
    Stage.name,
)


async def current_caller(
    session: SessionDep,
    authorization: Annotated[str | None, Header()] = None,
    _documented: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
) -> Caller:
    return await caller_for_token(session, bearer_token(authorization))


async def caller_for_token(session: AsyncSession, token: str) -> Caller:
    """The caller a company token names (the API's bearer header, the pages' cookie)."""
    row = (await session.execute(CALLER_QUERY, {"token_hash": digest(token)})).first()
    if row is None:
        raise Unauthorized("invalid company token")
    team, sso_id, expires_at, parity, pipeline, stage = row
    if _expired(expires_at):
        raise Unauthorized("company token expired; refresh it at /api/v3.1/teams/company_token")
    return Caller(
        team=team,
        sso_id=sso_id,
        flags={BOT_AI_CREATION_PARITY: bool(parity)},
        default_placement=None if pipeline is None or stage is None else (pipeline, stage),
    )


async def caller_on_held(held: HeldConnections, token_hash: str) -> Caller | None:
    """The caller of a valid, unexpired token (by its digest) read on held connections,
    with its team's default placement; None for anything else (the route then answers,
    401 included). Its team, pipeline and stage are unsaved instances holding what a
    create reads."""
    statement = HeldStatement.of(CALLER_COLUMNS_QUERY)
    row = await held.fetchrow(statement.sql, *statement.args({"token_hash": token_hash}))
    if row is None:
        return None
    team_id, company_id, version, sso_id, expires_at, parity = row[:6]
    pipeline_id, pipeline, stage_id, stage = row[6:]
    if _expired(expires_at) or pipeline_id is None or stage_id is None:
        return None
    return Caller(
        team=Team(id=team_id, external_company_id=company_id, caller_version=version),
        sso_id=sso_id,
        flags={BOT_AI_CREATION_PARITY: bool(parity)},
        default_placement=(
            Pipeline(id=pipeline_id, name=pipeline),
            Stage(id=stage_id, name=stage),
        ),
    )


# A guard for a write made with a caller read earlier (the deal create's fast path
# remembers callers by token): one row while the token still gives
# exactly that caller, none once anything of it changed. The token's row (its team,
# identity and expiry) and the team's row (its company id) are compared as they are;
# the rest of the caller (the parity flag, the default pipeline and its first stage,
# names included) is compared by the team's ``caller_version``, which the database's
# triggers bump on every change to those rows (migration 0004). That is two key
# lookups instead of the lookup's five-table join, its sort and its limit. A statement
# that writes only ``FROM`` it writes nothing once it gives no row.
_GUARD = _compiled_with_names(
    select(literal_column("1").label("current"))
    .select_from(CompanyToken)
    .join(Team, Team.id == CompanyToken.team_id)
    .where(
        CompanyToken.token_hash == bindparam("token_hash"),
        CompanyToken.team_id == bindparam("guard_team_id"),
        CompanyToken.sso_id == bindparam("guard_sso_id"),
        CompanyToken.expires_at > bindparam("guard_now"),
        Team.external_company_id == bindparam("guard_company_id"),
        Team.caller_version == bindparam("guard_caller_version"),
    )
)


def caller_guard(token_hash: str, caller: Caller) -> tuple[str, dict[str, Any]]:
    """The guard's SQL (named ``:params``) and its parameters for ``caller`` as read for
    ``token_hash`` (by :func:`caller_on_held`, which reads its team's caller version)."""
    sql, given = _GUARD
    return sql, {
        **given,
        "token_hash": token_hash,
        "guard_team_id": caller.team.id,
        "guard_sso_id": caller.sso_id,
        "guard_now": utcnow(),
        "guard_company_id": caller.team.external_company_id,
        "guard_caller_version": caller.team.caller_version,
    }


def _expired(expires_at: datetime) -> bool:
    return expires_at <= utcnow()


async def require_admin(
    settings: SettingsDep,
    x_admin_key: Annotated[str | None, Security(ADMIN_KEY)] = None,
) -> None:
    if not x_admin_key or not hmac.compare_digest(
        x_admin_key.encode(), settings.admin_key.encode()
    ):
        raise Unauthorized("missing or wrong X-Admin-Key")


CurrentCaller = Annotated[Caller, Depends(current_caller)]
AdminOnly = Depends(require_admin)
