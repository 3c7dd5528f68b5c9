"""``crm-parity``: the operator's command line.

    crm-parity migrate                      bring both databases to the current schema
    crm-parity create-team NAME COMPANY_ID  a team with its API key and first token
    crm-parity link-omni TEAM_ID ...        where the team's events go
    crm-parity flag TEAM_ID on|off          the bot_ai_creation_parity flag
    crm-parity deliveries list|replay       the webhook delivery log
    crm-parity demo                         the whole system, embedded, with a walkthrough

Every command reads the same settings as the services (CRM_DATABASE_URL, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.database import create_engine, run_after_commit, session_factory
from crm_service.events.dispatch import pending_outbox_ids
from crm_service.settings import Settings, get_settings

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


def migrate(section: str, url: str | None = None) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"), ini_section=section)
    if url:
        config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "head")


def _in_transaction(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    async def run() -> T:
        engine = create_engine(settings.database_url)
        try:
            async with session_factory(engine)() as session:
                result = await work(session)
                await session.commit()
                await run_after_commit(session)
                outbox_items = pending_outbox_ids(session)
        finally:
            await engine.dispose()
        if outbox_items:
            _enqueue_or_warn(outbox_items)
        return result

    return asyncio.run(run())


def _enqueue_or_warn(items: list[tuple[int, str]]) -> None:
    from crm_service.worker import enqueue_outbox

    try:
        enqueue_outbox(items)
    except Exception as error:
        print(f"broker unreachable ({error!r}); the outbox sweep will send it", file=sys.stderr)


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def cmd_migrate(args: argparse.Namespace) -> int:
    if args.which in ("crm", "both"):
        migrate("crm")
    if args.which in ("omni", "both"):
        migrate("omni")
    return 0


def cmd_create_team(args: argparse.Namespace) -> int:
    from crm_service.teams.service import team_service

    settings = get_settings()

    async def work(session: AsyncSession) -> dict[str, Any]:
        team, api_key, token = await team_service.create(
            session,
            name=args.name,
            external_company_id=args.company_id,
            token_ttl=settings.token_ttl_seconds,
        )
        return {
            "id": team.id,
            "name": team.name,
            "external_company_id": team.external_company_id,
            "api_key": api_key,
            "access_token": token,
            "expires_in": settings.token_ttl_seconds,
        }

    _print(_in_transaction(settings, work))
    return 0


def cmd_link_omni(args: argparse.Namespace) -> int:
    from crm_service.teams.schemas import OmnichannelLinkIn
    from crm_service.teams.service import team_service

    link_in = OmnichannelLinkIn(
        base_url=args.base_url,
        public_url=args.public_url or args.base_url,
        webhook_secret=args.webhook_secret,
        api_token=args.api_token,
    )

    async def work(session: AsyncSession) -> dict[str, Any]:
        link = await team_service.link_omnichannel(session, args.team_id, link_in)
        return {"team_id": link.team_id, "base_url": link.base_url, "public_url": link.public_url}

    _print(_in_transaction(get_settings(), work))
    return 0


def cmd_flag(args: argparse.Namespace) -> int:
    from crm_service.teams.features import BOT_AI_CREATION_PARITY, build_flag_cache
    from crm_service.teams.service import team_service

    settings = get_settings()

    async def work(session: AsyncSession) -> dict[str, Any]:
        feature = await team_service.set_feature(
            session,
            build_flag_cache(settings.redis_url),
            args.team_id,
            args.flag or BOT_AI_CREATION_PARITY,
            args.state == "on",
        )
        return {"team_id": feature.team_id, "flag": feature.name, "enabled": feature.enabled}

    _print(_in_transaction(settings, work))
    return 0


def cmd_deliveries(args: argparse.Namespace) -> int:
    from crm_service.events.service import delivery_service

    settings = get_settings()

    async def work(session: AsyncSession) -> Any:
        if args.action == "replay":
            return await delivery_service.replay(session, args.id)
        return await delivery_service.list(
            session,
            status=args.status,
            event_type=args.event_type,
            team_id=args.team_id,
            limit=args.limit,
            offset=args.offset,
        )

    result = _in_transaction(settings, work)
    _print(result.model_dump(mode="json") if hasattr(result, "model_dump") else result)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from crm_service.demo import run_demo

    return run_demo(
        crm_port=args.crm_port,
        omni_port=args.omni_port,
        exit_after=args.exit,
        data_dir=Path(args.data_dir),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crm-parity", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    migrate_parser = commands.add_parser("migrate", help="alembic upgrade head")
    migrate_parser.add_argument("which", nargs="?", choices=["crm", "omni", "both"], default="both")
    migrate_parser.set_defaults(handler=cmd_migrate)

    team = commands.add_parser("create-team", help="create a team; prints its credentials")
    team.add_argument("name")
    team.add_argument("company_id", help="the external company id the chat inbox knows")
    team.set_defaults(handler=cmd_create_team)

    link = commands.add_parser("link-omni", help="set the team's Omnichannel link")
    link.add_argument("team_id", type=int)
    link.add_argument("--base-url", required=True)
    link.add_argument("--public-url")
    link.add_argument("--webhook-secret", required=True)
    link.add_argument("--api-token", required=True)
    link.set_defaults(handler=cmd_link_omni)

    flag = commands.add_parser("flag", help="turn a team's feature flag on or off")
    flag.add_argument("team_id", type=int)
    flag.add_argument("state", choices=["on", "off"])
    flag.add_argument("--flag", help="default: bot_ai_creation_parity")
    flag.set_defaults(handler=cmd_flag)

    deliveries = commands.add_parser("deliveries", help="list or replay webhook deliveries")
    actions = deliveries.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list")
    listing.add_argument("--status", choices=["pending", "delivered", "failed"])
    listing.add_argument("--event-type")
    listing.add_argument("--team-id", type=int)
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--offset", type=int, default=0)
    replay = actions.add_parser("replay")
    replay.add_argument("id", type=int)
    deliveries.set_defaults(handler=cmd_deliveries)

    demo = commands.add_parser("demo", help="run both services + worker embedded, walk through")
    demo.add_argument("--crm-port", type=int, default=8000)
    demo.add_argument("--omni-port", type=int, default=8001)
    demo.add_argument("--data-dir", default="var/demo")
    demo.add_argument("--exit", action="store_true", help="stop after the walkthrough")
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
