"""The Omni API: ``omni_service.main:app`` (DESIGN.md §7, §8)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from omni_service import health, metrics
from omni_service.database import create_engine, session_factory
from omni_service.errors import install_error_handlers
from omni_service.inbox.router import INBOX_STATIC_PATH, inbox_static_files
from omni_service.inbox.router import router as inbox_router
from omni_service.organizations.cache import OrganizationCache
from omni_service.organizations.router import router as organizations_router
from omni_service.previews.caching import PreviewCache
from omni_service.previews.changes import ChangeFeed
from omni_service.previews.fast_path import PreviewFastPath
from omni_service.previews.router import router as previews_router
from omni_service.previews.stream import router as preview_stream_router
from omni_service.receiver.docs import install_webhook_docs
from omni_service.receiver.fast_path import ReceiverFastPath
from omni_service.receiver.router import WEBHOOK_PATH
from omni_service.receiver.router import router as receiver_router
from omni_service.receiver.service import ReceiverDatabase
from omni_service.rooms.fast_path import HistoryFastPath
from omni_service.rooms.router import router as rooms_router
from omni_service.settings import Settings, get_settings
from service_kit.edge import install_request_edge
from service_kit.garbage_collection import settle_after_startup, unsettle
from service_kit.logs import configure_logging
from service_kit.openapi import install_error_docs
from service_kit.pages import KIT_STATIC_PATH, kit_static_files
from service_kit.production import refuse_development_secrets


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    refuse_development_secrets(
        settings.database_url,
        {"OMNI_ADMIN_KEY": (settings.admin_key, Settings.model_fields["admin_key"].default)},
    )
    configure_logging()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One engine per process, created on startup (not import) so that forked workers
        # and test apps each get their own pool. No pre-ping: on asyncpg it is three round
        # trips (BEGIN, ping, ROLLBACK) on every checkout, i.e. every request. A connection
        # the server dropped fails its request once and the pool then replaces every
        # connection older than the failure; recycling bounds how long an idle connection
        # can go stale unnoticed.
        # No overflow: past the pool's 10, a request waits for a connection instead of
        # opening one that is closed again on return. Under load that churn (a connect with
        # its SSL probe and a close per request) took an eighth of the receiver's CPU.
        pooling = {} if settings.database_url.startswith("sqlite") else {"max_overflow": 0}
        engine = create_engine(
            settings.database_url, pool_pre_ping=False, pool_recycle=1800, **pooling
        )
        app.state.engine = engine
        app.state.session_factory = session_factory(engine)
        app.state.receiver_database = ReceiverDatabase.of(engine, app.state.session_factory)
        app.state.change_feed.start()
        try:
            settle_after_startup()
            yield
        finally:
            unsettle()
            await app.state.change_feed.close()
            await app.state.receiver_database.close()
            await engine.dispose()

    app = FastAPI(title="Omni (chat inbox)", version="1.0.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.organization_cache = OrganizationCache(
        ttl_seconds=settings.organization_cache_seconds,
        max_entries=settings.organization_cache_entries,
    )
    app.state.change_feed = ChangeFeed(
        settings.database_url,
        PreviewCache(
            ttl_seconds=settings.preview_cache_seconds,
            max_entries=settings.preview_cache_entries,
        ),
    )
    # Inside the edge: an unchanged poll is answered from the caches before any routing
    # (it sets the route's template for the edge's metrics).
    app.add_middleware(PreviewFastPath)
    # Likewise a CRM event: the receiver's own functions, without routing.
    app.add_middleware(ReceiverFastPath)
    # And the history the CRM reads for each timeline note, with a cached token.
    app.add_middleware(HistoryFastPath)
    install_error_handlers(app)
    # Request ids, HTTP metrics and the bad-text guard, in one layer around the fast path
    # and the router: every line of a request carries its id. The receiver checks its own
    # signed body (it needs the exact bytes, and 401 first) and limits its size itself.
    install_request_edge(app, registry=metrics.REGISTRY, raw_body_paths=[WEBHOOK_PATH])
    for router in (
        health.router,
        metrics.router,
        organizations_router,
        receiver_router,
        previews_router,
        preview_stream_router,
        rooms_router,
        inbox_router,
    ):
        app.include_router(router)
    app.mount(KIT_STATIC_PATH, kit_static_files(), name="kit-static")
    app.mount(INBOX_STATIC_PATH, inbox_static_files(), name="inbox-static")
    install_webhook_docs(app)
    install_error_docs(app, conflicts=[("POST", "/admin/organizations")])
    return app


app = create_app()
