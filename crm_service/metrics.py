"""Prometheus counters of the CRM (exposed at ``/metrics``)."""

from prometheus_client import Counter, Histogram

RECORDS_CREATED = {
    ("deal", "bot"): Counter("bot_deal_created", "Deals created by a chatbot"),
    ("deal", "agentic_ai"): Counter("ai_deal_created", "Deals created by an AI agent"),
    ("ticket", "bot"): Counter("bot_ticket_created", "Tickets created by a chatbot"),
    ("ticket", "agentic_ai"): Counter("ai_ticket_created", "Tickets created by an AI agent"),
}

WEBHOOK_DELIVERIES = Counter(
    "crm_webhook_deliveries",
    "Webhook delivery attempts by outcome",
    ["outcome"],
)
WEBHOOK_DELIVERY_LATENCY = Histogram(
    "crm_webhook_delivery_latency_seconds",
    "Latency of one webhook delivery attempt",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TIMELINE_LOG_CREATION_FAILED = Counter(
    "timeline_log_creation_failed",
    "Chat-history notes written without an excerpt because Omni could not be read",
)


def count_record_created(kind: str, creator_flag: str | None) -> None:
    if creator_flag is not None:
        RECORDS_CREATED[(kind, creator_flag)].inc()
