"""The CRM API: ``uvicorn crm_service.main:app``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from crm_service.contacts.router import router as contacts_router
from crm_service.database import create_engine, session_factory
from crm_service.deals.fast_path import DealCreateFastPath
from crm_service.deals.router import router as deals_router
from crm_service.errors import install_error_handlers
from crm_service.events.catalog import install_event_catalog
from crm_service.events.router import admin_router as deliveries_admin_router
from crm_service.logs import configure_logging
from crm_service.metrics import API_REGISTRY, WORKER_METRIC_NAMES
from crm_service.pages.router import router as pages_router
from crm_service.pipelines.router import router as pipelines_router
from crm_service.settings import Settings, get_settings
from crm_service.teams.features import build_flag_cache
from crm_service.teams.router import admin_router as teams_admin_router
from crm_service.teams.router import token_router
from crm_service.tickets.router import router as tickets_router
from crm_service.timeline.router import router as timeline_router
from service_kit.database import libpq_dsn
from service_kit.edge import install_request_edge
from service_kit.garbage_collection import settle_after_startup, unsettle
from service_kit.held_connections import HeldConnections
from service_kit.metrics import exposition
from service_kit.openapi import install_error_docs
from service_kit.pages import KIT_STATIC_PATH, kit_static_files
from service_kit.production import refuse_development_secrets

# Per API process (compose runs two): 2 x 20 of PostgreSQL's default 100 connections.
API_POOL = {"pool_size": 20, "max_overflow": 0}

# Operations that can answer 409: an Idempotency-Key still in flight, a team that exists,
# a replay of an event that is still pending.
CONFLICTS = (
    ("POST", "/api/v3.1/deals"),
    ("POST", "/api/v3.1/tickets"),
    ("POST", "/admin/teams"),
    ("POST", "/admin/deliveries/{delivery_id}/replay"),
)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    refuse_development_secrets(
        settings.database_url,
        {"CRM_ADMIN_KEY": (settings.admin_key, Settings.model_fields["admin_key"].default)},
    )
    configure_logging()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # No pre-ping: on asyncpg it is three round trips (BEGIN, ping, ROLLBACK) on every
        # checkout, i.e. every request. A connection the server dropped fails its request
        # once and the pool then replaces every connection older than the failure;
        # recycling bounds how long an idle connection can go stale unnoticed.
        # A fixed pool, no overflow: an overflow connection is closed as soon as it is
        # returned, so a burst wider than the pool opened and closed a connection (TCP,
        # TLS negotiation, authentication) on nearly every request. Past the pool,
        # requests wait for a connection instead.
        engine = create_engine(
            settings.database_url,
            pool_pre_ping=False,
            pool_recycle=1800,
            **({} if settings.database_url.startswith("sqlite") else API_POOL),
        )
        app.state.engine = engine
        app.state.session_factory = session_factory(engine)
        # The deal create's fast path runs its two statements on these (PostgreSQL only).
        dsn = libpq_dsn(settings.database_url)
        app.state.held_connections = None if dsn is None else HeldConnections(dsn)
        app.state.flag_cache = build_flag_cache(settings.redis_url)
        if not hasattr(app.state, "enqueue_outbox"):
            from crm_service.worker import enqueue_outbox

            app.state.enqueue_outbox = enqueue_outbox
        try:
            settle_after_startup()
            yield
        finally:
            unsettle()
            dispatcher = getattr(app.state, "outbox_dispatcher", None)
            if dispatcher is not None:
                await dispatcher.close()
            close = getattr(app.state.flag_cache, "close", None)
            if close is not None:
                await close()
            if app.state.held_connections is not None:
                await app.state.held_connections.close()
            await engine.dispose()

    app = FastAPI(title="CRM service", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    # Inside the edge: a chatbot's plain deal create, without routing (the route answers
    # everything else).
    app.add_middleware(DealCreateFastPath)
    install_error_handlers(app)
    # Request ids, HTTP metrics, the 1 MiB body limit and the bad-text guard, in one layer
    # around the fast path and the router: every line of a request carries its id.
    install_request_edge(app, registry=API_REGISTRY, max_body_bytes=settings.max_body_bytes)
    for router in (
        teams_admin_router,
        deliveries_admin_router,
        token_router,
        contacts_router,
        pipelines_router,
        deals_router,
        tickets_router,
        timeline_router,
        pages_router,
    ):
        app.include_router(router)
    app.mount(KIT_STATIC_PATH, kit_static_files(), name="kit-static")
    install_event_catalog(app)
    install_error_docs(app, conflicts=CONFLICTS)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is up and serving; says nothing about its dependencies."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        """Ready to take traffic: the database answers. 503 otherwise, with only the
        error's type under `database`."""
        try:
            async with app.state.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as error:
            return JSONResponse(
                {"status": "unavailable", "database": type(error).__name__}, status_code=503
            )
        return JSONResponse({"status": "ok", "database": "ok"})

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    async def metrics() -> Response:
        return exposition(API_REGISTRY, excluded=WORKER_METRIC_NAMES)

    return app


app = create_app()
