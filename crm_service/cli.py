"""``crm-parity``: the operator's command line for the CRM and Omni.

It works on the databases directly, through the same services the admin APIs call, so
an operator needs database access and no admin key. Output is a table, or JSON with
``--json``. Every error, a usage error included, is one line on stderr and exit code 1
(a script needs to tell only success from failure); set ``CRM_PARITY_DEBUG=1`` to see
the traceback instead. A group given no command prints its help and exits 1 too.

Secrets never come from arguments (they would land in ``ps`` and shell history): the
webhook secret is read from ``CRM_PARITY_WEBHOOK_SECRET`` and Omni's API token from
``CRM_PARITY_OMNI_API_TOKEN``, else from a hidden prompt.

Every command reads the same settings as the services (CRM_DATABASE_URL, ...).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

# Typer ships its own copy of click; its errors are these classes, not click's.
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from crm_service.database import create_engine, run_after_commit, session_factory
from crm_service.events.dispatch import pending_outbox_ids
from crm_service.settings import get_settings
from service_kit.errors import DomainError

T = TypeVar("T")
WEBHOOK_SECRET_ENV = "CRM_PARITY_WEBHOOK_SECRET"  # noqa: S105 - a variable name
API_TOKEN_ENV = "CRM_PARITY_OMNI_API_TOKEN"  # noqa: S105 - a variable name
DEBUG_ENV = "CRM_PARITY_DEBUG"

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

app = typer.Typer(
    name="crm-parity",
    help="The operator's command line for the CRM and Omni (see each command's --help).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
teams_app = typer.Typer(help="CRM teams (tenants).", no_args_is_help=True)
orgs_app = typer.Typer(help="Omni organizations (chat-inbox tenants).", no_args_is_help=True)
secrets_app = typer.Typer(help="Rotate webhook signing secrets.", no_args_is_help=True)
deliveries_app = typer.Typer(help="The CRM's webhook delivery log.", no_args_is_help=True)
app.add_typer(teams_app, name="teams")
app.add_typer(orgs_app, name="orgs")
app.add_typer(secrets_app, name="secrets")
app.add_typer(deliveries_app, name="deliveries")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
TeamId = Annotated[int, typer.Argument(help="The CRM team id.", min=1, max=2**31 - 1)]
OrgId = Annotated[int, typer.Argument(help="The Omni organization id.", min=1, max=2**31 - 1)]


class CliError(Exception):
    """A message for the operator; printed as one line, exit code 1."""


# --- plumbing ----------------------------------------------------------------------------


def migrate(section: str, url: str | None = None) -> None:
    from service_kit.migrate import upgrade

    upgrade(section, url)


def _in_transaction(url: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """One unit of work: commit, after-commit hooks, then hand outbox rows to the broker."""

    async def run() -> tuple[T, list[tuple[int, str]]]:
        engine = create_engine(url)
        try:
            async with session_factory(engine)() as session:
                result = await work(session)
                await session.commit()
                await run_after_commit(session)
                return result, pending_outbox_ids(session)
        finally:
            await engine.dispose()

    result, outbox_items = asyncio.run(run())
    if outbox_items:
        _enqueue_or_warn(outbox_items)
    return result


def _crm(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    return _in_transaction(get_settings().database_url, work)


def _omni(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    from omni_service.settings import get_settings as omni_settings

    return _in_transaction(omni_settings().database_url, work)


def _enqueue_or_warn(items: list[tuple[int, str]]) -> None:
    from crm_service.worker import enqueue_outbox

    try:
        enqueue_outbox(items)
    except Exception as error:
        err.print(f"warning: broker unreachable ({error}); the outbox sweep will send it")


def _secret(env_name: str, prompt: str) -> str:
    value = os.environ.get(env_name)
    if value:
        return value
    if not sys.stdin.isatty():
        raise CliError(f"no {prompt.lower()}: set {env_name} (stdin is not a terminal to prompt)")
    try:
        entered: str = typer.prompt(prompt, hide_input=True)
    except typer.Abort:
        raise CliError(f"no {prompt.lower()}: set {env_name} or enter it at the prompt") from None
    return entered


def _emit(as_json: bool, value: Any, table: Callable[[], Table] | None = None) -> None:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if as_json or table is None:
        print(json.dumps(value, indent=2, default=str))
    else:
        out.print(table())


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        # Text, not str: a cell holding "[...]" (an error, an answer) is not rich markup.
        table.add_row(*(Text("" if cell is None else str(cell)) for cell in row))
    return table


def _record(title: str, value: dict[str, Any]) -> Callable[[], Table]:
    return lambda: _table(title, ["field", "value"], list(value.items()))


def _one_line(error: BaseException) -> str:
    if isinstance(error, DomainError):
        detail = error.detail
        if isinstance(detail, list):
            return "; ".join(str(item.get("msg", item)) for item in detail)
        return detail
    if isinstance(error, ValidationError):
        return "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
            for item in error.errors()
        )
    if isinstance(error, DBAPIError):
        original = error.orig if error.orig is not None else error
        text = str(original).strip().splitlines()[0] if str(original).strip() else ""
        hint = (
            " (run `crm-parity migrate`?)"
            if ("does not exist" in text or "no such table" in text)
            else ""
        )
        return f"database error: {type(original).__name__}: {text}{hint}"
    if isinstance(error, (OSError, SQLAlchemyError)):
        return f"database unreachable: {error}"
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


# --- migrate -----------------------------------------------------------------------------


class Which(StrEnum):
    crm = "crm"
    omni = "omni"
    both = "both"


@app.command("migrate")
def migrate_command(
    which: Annotated[
        Which, typer.Argument(help="Which database to bring to the current schema.")
    ] = Which.both,
) -> None:
    """Bring the CRM and/or Omni database to the current schema (alembic upgrade head)."""
    if which in (Which.crm, Which.both):
        migrate("crm")
    if which in (Which.omni, Which.both):
        migrate("omni")
    err.print(f"migrated: {which.value}")


# --- teams -------------------------------------------------------------------------------


def _create_team(name: str, company_id: str, as_json: bool) -> None:
    from crm_service.teams.schemas import TeamCreate, TeamCreated
    from crm_service.teams.service import team_service

    settings = get_settings()
    body = TeamCreate(name=name, external_company_id=company_id)

    async def work(session: AsyncSession) -> TeamCreated:
        team, api_key, token = await team_service.create(
            session,
            name=body.name,
            external_company_id=body.external_company_id,
            token_ttl=settings.token_ttl_seconds,
        )
        return TeamCreated(
            id=team.id,
            name=team.name,
            external_company_id=team.external_company_id,
            api_key=api_key,
            access_token=token,
            expires_in=settings.token_ttl_seconds,
        )

    created = _crm(work)
    _emit(as_json, created, _record("team created (the key is shown once)", created.model_dump()))


NameArg = Annotated[str, typer.Argument(help="Display name.")]
CompanyArg = Annotated[
    str, typer.Argument(help="The external company id events carry (shared with Omni).")
]


@teams_app.command("create")
def teams_create(name: NameArg, company_id: CompanyArg, as_json: JsonOption = False) -> None:
    """Create a team with its default pipeline; prints its API key and a first token."""
    _create_team(name, company_id, as_json)


@app.command("create-team")
def create_team(name: NameArg, company_id: CompanyArg, as_json: JsonOption = False) -> None:
    """Same as `teams create`."""
    _create_team(name, company_id, as_json)


@teams_app.command("list")
def teams_list(as_json: JsonOption = False) -> None:
    """Every team, its Omnichannel link and its flags."""
    from crm_service.teams.models import OmnichannelLink, Team, TeamFeature

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        teams = await session.execute(
            select(Team, OmnichannelLink)
            .outerjoin(OmnichannelLink, OmnichannelLink.team_id == Team.id)
            .order_by(Team.id)
        )
        features = await session.scalars(select(TeamFeature).where(TeamFeature.enabled))
        enabled: dict[int, list[str]] = {}
        for feature in features:
            enabled.setdefault(feature.team_id, []).append(feature.name)
        return [
            {
                "id": team.id,
                "name": team.name,
                "external_company_id": team.external_company_id,
                "omni_base_url": link.base_url if link else None,
                "flags_on": sorted(enabled.get(team.id, [])),
            }
            for team, link in teams.all()
        ]

    rows = _crm(work)
    _emit(
        as_json,
        rows,
        lambda: _table(
            "teams",
            ["id", "name", "company", "omni link", "flags on"],
            [
                [
                    r["id"],
                    r["name"],
                    r["external_company_id"],
                    r["omni_base_url"],
                    ", ".join(r["flags_on"]),
                ]
                for r in rows
            ],
        ),
    )


# --- links -------------------------------------------------------------------------------


@app.command("link-omni")
def link_omni(
    team_id: TeamId,
    base_url: Annotated[str, typer.Option(help="Omni's API base URL, where the CRM sends events.")],
    public_url: Annotated[
        str | None,
        typer.Option(help="Omni's public URL for room links (default: --base-url)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Link a team to Omni. The webhook secret comes from $CRM_PARITY_WEBHOOK_SECRET and
    Omni's API token from $CRM_PARITY_OMNI_API_TOKEN, else from hidden prompts."""
    from crm_service.teams.schemas import OmnichannelLinkIn

    secret = _secret(WEBHOOK_SECRET_ENV, "Webhook secret")
    token = _secret(API_TOKEN_ENV, "Omni API token")
    link_in = OmnichannelLinkIn(
        base_url=base_url,
        public_url=public_url or base_url,
        webhook_secret=secret,
        api_token=token,
    )
    _save_link(team_id, link_in, as_json, "team linked to Omni")


def _save_link(team_id: int, link_in: Any, as_json: bool, title: str) -> None:
    from crm_service.teams.service import team_service

    async def work(session: AsyncSession) -> dict[str, Any]:
        link = await team_service.link_omnichannel(session, team_id, link_in)
        return {
            "team_id": link.team_id,
            "base_url": link.base_url,
            "public_url": link.public_url,
            "secret_rotated_at": link.secret_rotated_at,
        }

    result = _crm(work)
    _emit(as_json, result, _record(title, result))


# --- flags -------------------------------------------------------------------------------


class FlagAction(StrEnum):
    on = "on"
    off = "off"
    show = "show"


@app.command("flag")
def flag(
    team_id: TeamId,
    action: Annotated[FlagAction, typer.Argument(help="Turn the flag on or off, or show it.")],
    flag_name: Annotated[
        str, typer.Option("--flag", help="The feature flag.")
    ] = "bot_ai_creation_parity",
    as_json: JsonOption = False,
) -> None:
    """Turn a team's feature flag on or off, or show its flags."""
    from crm_service.teams.features import KNOWN_FEATURES, build_flag_cache
    from crm_service.teams.models import TeamFeature
    from crm_service.teams.service import team_service

    settings = get_settings()

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        if action is FlagAction.show:
            await team_service.get(session, team_id)
            stored = {
                feature.name: feature.enabled
                for feature in await session.scalars(
                    select(TeamFeature).where(TeamFeature.team_id == team_id)
                )
            }
            return [
                {"team_id": team_id, "flag": name, "enabled": stored.get(name, False)}
                for name in sorted(KNOWN_FEATURES)
            ]
        feature = await team_service.set_feature(
            session,
            build_flag_cache(settings.redis_url),
            team_id,
            flag_name,
            action is FlagAction.on,
        )
        return [{"team_id": feature.team_id, "flag": feature.name, "enabled": feature.enabled}]

    rows = _crm(work)
    value: Any = rows if action is FlagAction.show else rows[0]
    _emit(
        as_json,
        value,
        lambda: _table(
            f"team {team_id} flags",
            ["flag", "enabled"],
            [[r["flag"], "on" if r["enabled"] else "off"] for r in rows],
        ),
    )


# --- Omni organizations ------------------------------------------------------------------

GenerateOption = Annotated[
    bool,
    typer.Option(
        "--generate-secret",
        help="Generate a new whsec_ secret (printed once) instead of reading "
        "$CRM_PARITY_WEBHOOK_SECRET or prompting.",
    ),
]


def _new_or_given_secret(generate: bool) -> str:
    if generate:
        from shared_contracts.signatures import generate_secret

        return generate_secret()
    return _secret(WEBHOOK_SECRET_ENV, "Webhook secret")


@orgs_app.command("create")
def orgs_create(
    name: NameArg,
    company_id: CompanyArg,
    generate: GenerateOption = False,
    as_json: JsonOption = False,
) -> None:
    """Create an Omni organization; prints its API token (shown once)."""
    from omni_service.organizations import service
    from omni_service.organizations.schemas import OrganizationCreate

    body = OrganizationCreate(
        name=name, company_id=company_id, webhook_secret=_new_or_given_secret(generate)
    )

    async def work(session: AsyncSession) -> dict[str, Any]:
        organization, token = await service.create(
            session, name=body.name, company_id=body.company_id, webhook_secret=body.webhook_secret
        )
        result = {
            "id": organization.id,
            "name": organization.name,
            "company_id": organization.company_id,
            "api_token": token,
        }
        if generate:
            result["webhook_secret"] = body.webhook_secret
        return result

    created = _omni(work)
    _emit(as_json, created, _record("organization created (secrets are shown once)", created))


@orgs_app.command("list")
def orgs_list(as_json: JsonOption = False) -> None:
    """Every Omni organization."""
    from omni_service.organizations.models import Organization

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        return [
            {
                "id": org.id,
                "name": org.name,
                "company_id": org.company_id,
                "secret_rotated_at": org.secret_rotated_at,
                "created_at": org.created_at,
            }
            for org in await session.scalars(select(Organization).order_by(Organization.id))
        ]

    rows = _omni(work)
    _emit(
        as_json,
        rows,
        lambda: _table(
            "organizations",
            ["id", "name", "company", "secret rotated", "created"],
            [list(row.values()) for row in rows],
        ),
    )


# --- secret rotation ---------------------------------------------------------------------


@secrets_app.command("rotate-crm")
def rotate_crm(
    team_id: TeamId, generate: GenerateOption = False, as_json: JsonOption = False
) -> None:
    """Give a team's Omnichannel link a new signing secret; the old one keeps signing
    during the grace period (CRM_SECRET_ROTATION_GRACE_SECONDS)."""
    from crm_service.teams.models import OmnichannelLink
    from crm_service.teams.schemas import OmnichannelLinkIn
    from crm_service.teams.service import team_service

    secret = _new_or_given_secret(generate)

    async def current(session: AsyncSession) -> OmnichannelLink:
        await team_service.get(session, team_id)
        link = await session.get(OmnichannelLink, team_id)
        if link is None:
            raise CliError(f"team {team_id} has no Omnichannel link; run `crm-parity link-omni`")
        return link

    link = _crm(current)
    link_in = OmnichannelLinkIn(
        base_url=link.base_url,
        public_url=link.public_url,
        webhook_secret=secret,
        api_token=link.api_token,
    )
    _save_link(team_id, link_in, as_json, "CRM link secret rotated")
    if generate:
        err.print(f"new webhook secret (shown once): {secret}")


@secrets_app.command("rotate-omni")
def rotate_omni(
    org_id: OrgId, generate: GenerateOption = False, as_json: JsonOption = False
) -> None:
    """Give an Omni organization a new verifying secret; the old one keeps verifying
    during the grace period (OMNI_SECRET_ROTATION_GRACE_SECONDS)."""
    from omni_service.database import utcnow
    from omni_service.organizations import service
    from omni_service.organizations.schemas import WebhookSecretUpdate

    body = WebhookSecretUpdate(webhook_secret=_new_or_given_secret(generate))

    async def work(session: AsyncSession) -> dict[str, Any]:
        try:
            organization = await service.rotate_webhook_secret(
                session, org_id, body.webhook_secret, now=utcnow()
            )
        except DomainError:
            raise CliError(f"organization {org_id} not found") from None
        return {
            "id": organization.id,
            "company_id": organization.company_id,
            "secret_rotated_at": organization.secret_rotated_at,
        }

    result = _omni(work)
    _emit(as_json, result, _record("Omni organization secret rotated", result))
    if generate:
        err.print(f"new webhook secret (shown once): {body.webhook_secret}")


# --- deliveries --------------------------------------------------------------------------


def _delivery_rows(items: Sequence[Any]) -> list[list[Any]]:
    return [
        [d.id, d.event_type, f"{d.record_kind} {d.record_id}", d.team_id, d.status,
         len(d.attempts), d.created_at, d.last_error]
        for d in items
    ]  # fmt: skip


DELIVERY_COLUMNS = ["id", "event", "record", "team", "status", "attempts", "created", "error"]


@deliveries_app.command("list")
def deliveries_list(
    status: Annotated[
        str | None, typer.Option(help="Only this status: pending, delivered or failed.")
    ] = None,
    event_type: Annotated[
        str | None, typer.Option(help="Only this event type, e.g. qontak.crm.deal.create.")
    ] = None,
    team_id: Annotated[int | None, typer.Option(help="Only this team's events.", min=1)] = None,
    limit: Annotated[int, typer.Option(help="At most this many (1-100).", min=1, max=100)] = 20,
    offset: Annotated[int, typer.Option(help="Skip this many, newest first.", min=0)] = 0,
    as_json: JsonOption = False,
) -> None:
    """Webhook deliveries, newest first."""
    from crm_service.events.service import delivery_service

    page = _crm(
        lambda session: delivery_service.list(
            session,
            status=status,
            event_type=event_type,
            team_id=team_id,
            limit=limit,
            offset=offset,
        )
    )
    _emit(as_json, page, lambda: _table("deliveries", DELIVERY_COLUMNS, _delivery_rows(page.items)))


DeliveryId = Annotated[int, typer.Argument(help="The delivery (outbox event) id.", min=1)]


@deliveries_app.command("replay")
def deliveries_replay(delivery_id: DeliveryId, as_json: JsonOption = False) -> None:
    """Send a delivered or failed event again (same webhook-id, fresh retry schedule)."""
    from crm_service.events.service import delivery_service

    entry = _crm(lambda session: delivery_service.replay(session, delivery_id))
    _emit(as_json, entry, lambda: _table("replayed", DELIVERY_COLUMNS, _delivery_rows([entry])))


@deliveries_app.command("inspect")
def deliveries_inspect(delivery_id: DeliveryId, as_json: JsonOption = False) -> None:
    """One delivery with every attempt and the start of each answer."""
    from crm_service.events.service import delivery_service

    detail = _crm(lambda session: delivery_service.get(session, delivery_id))

    def tables() -> Table:
        summary = _table(f"delivery {detail.id}", DELIVERY_COLUMNS, _delivery_rows([detail]))
        out.print(summary)
        return _table(
            "attempts",
            ["at", "status", "latency ms", "error", "answer"],
            [
                [a.created_at, a.status_code, a.latency_ms, a.error, a.response_excerpt]
                for a in detail.attempts
            ],
        )

    _emit(as_json, detail, tables)


# --- events ------------------------------------------------------------------------------

events_app = typer.Typer(help="The webhook event catalog.", no_args_is_help=True)
app.add_typer(events_app, name="events")


@events_app.command("schema")
def events_schema(
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write to this file instead of standard output."),
    ] = None,
) -> None:
    """The JSON Schema (2020-12) of the six event types, as the CRM sends them."""
    from shared_contracts.catalog import events_json_schema

    text = json.dumps(events_json_schema(), indent=2, ensure_ascii=False) + "\n"
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        raise CliError(f"cannot write {output}: {error.strerror}") from None


# --- demo --------------------------------------------------------------------------------


@app.command("demo")
def demo(
    crm_port: Annotated[int, typer.Option(help="Port of the CRM API.", min=1, max=65535)] = 8000,
    omni_port: Annotated[int, typer.Option(help="Port of the Omni API.", min=1, max=65535)] = 8001,
    data_dir: Annotated[
        Path, typer.Option(help="Where the SQLite files and logs go (wiped first).")
    ] = Path("var/demo"),
    exit_after: Annotated[
        bool, typer.Option("--exit", help="Stop the services after the walkthrough.")
    ] = False,
) -> None:
    """Run both APIs and a worker embedded (SQLite), walk through the parity flow."""
    from crm_service.demo import DemoError, run_demo

    try:
        code = run_demo(
            crm_port=crm_port, omni_port=omni_port, exit_after=exit_after, data_dir=data_dir
        )
    except DemoError as error:
        raise CliError(str(error)) from None
    raise typer.Exit(code)


# --- entry point -------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    command = typer.main.get_command(app)
    try:
        result = command.main(
            args=list(argv) if argv is not None else None,
            prog_name="crm-parity",
            standalone_mode=False,
        )
    except typer.Exit as done:
        return int(done.exit_code)
    except typer.Abort:
        err.print("error: aborted")
        return 1
    except NoArgsIsHelpError as error:
        error.show()
        return 1
    except UsageError as error:
        # Click's own rendering is the usage line plus a boxed message; one line instead.
        # Some parser errors (an option missing its value) carry no context.
        command_path = error.ctx.command_path if error.ctx else "crm-parity"
        hint = f" (see `{command_path} --help`)"
        err.print(f"error: {' '.join(error.format_message().split())}{hint}", markup=False)
        return 1
    except ClickException as error:
        err.print(f"error: {' '.join(error.format_message().split())}", markup=False)
        return 1
    except Exception as error:
        if os.environ.get(DEBUG_ENV):
            raise
        message = str(error) if isinstance(error, CliError) else _one_line(error)
        err.print(f"error: {' '.join(message.split())}", markup=False)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
