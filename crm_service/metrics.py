"""Prometheus metrics of the CRM, in two registries: what the API counts (records created,
HTTP requests; its ``/metrics``) and what the worker counts (deliveries, notes; the
worker's ``/metrics`` on ``CRM_WORKER_METRICS_PORT``). Neither shows the other's metrics,
which would only ever read zero there."""

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector

API_REGISTRY = CollectorRegistry()
WORKER_REGISTRY = CollectorRegistry()
ProcessCollector(registry=API_REGISTRY)
ProcessCollector(registry=WORKER_REGISTRY)

RECORDS_CREATED = {
    ("deal", "bot"): Counter(
        "bot_deal_created", "Deals created by a chatbot", registry=API_REGISTRY
    ),
    ("deal", "agentic_ai"): Counter(
        "ai_deal_created", "Deals created by an AI agent", registry=API_REGISTRY
    ),
    ("ticket", "bot"): Counter(
        "bot_ticket_created", "Tickets created by a chatbot", registry=API_REGISTRY
    ),
    ("ticket", "agentic_ai"): Counter(
        "ai_ticket_created", "Tickets created by an AI agent", registry=API_REGISTRY
    ),
}

WEBHOOK_DELIVERIES = Counter(
    "crm_webhook_deliveries",
    "Webhook delivery attempts by outcome",
    ["outcome"],
    registry=WORKER_REGISTRY,
)
WEBHOOK_DELIVERY_LATENCY = Histogram(
    "crm_webhook_delivery_latency_seconds",
    "Latency of one webhook delivery attempt",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=WORKER_REGISTRY,
)
TIMELINE_LOG_CREATION_FAILED = Counter(
    "timeline_log_creation_failed",
    "Chat-history notes written without an excerpt because Omni could not be read",
    registry=WORKER_REGISTRY,
)
WORKER_METRIC_NAMES = frozenset(
    (
        "crm_webhook_deliveries",
        "crm_webhook_delivery_latency_seconds",
        "timeline_log_creation_failed",
    )
)


def count_record_created(kind: str, creator_flag: str | None) -> None:
    if creator_flag is not None:
        RECORDS_CREATED[(kind, creator_flag)].inc()
