"""Per-process caches of the two organization lookups every hot request makes: API token
→ organization id (every poll) and company id → signing secrets (every event).

Both are bounded in age (``OMNI_ORGANIZATION_CACHE_SECONDS``, default 2 s) and in size
(``OMNI_ORGANIZATION_CACHE_ENTRIES`` per map, least recently used evicted). Only found
organizations are cached: an unknown token or company always asks the database, so a
new organization works at once and a guesser cannot fill the cache.

Staleness, and why it is safe within the bound:

* A token removed or changed in the database (there is no API for it; an operator's
  UPDATE) keeps working on a process that had it cached for at most the age bound.
* A webhook secret rotated through the admin API: the process that rotated it drops its
  entry on commit; other processes may verify with the old pair for up to the bound. A
  signature that fails against cached secrets is re-checked against a fresh read before
  the 401, so the new secret works everywhere at once; the old one stays accepted for at
  most the bound beyond what the rotation grace already allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from omni_service.organizations.models import Organization
from service_kit.expiring import ExpiringLRU


@dataclass(frozen=True, slots=True)
class SigningIdentity:
    """What the receiver needs of an organization: its id and its secrets."""

    id: int
    webhook_secret: str
    previous_webhook_secret: str | None
    secret_rotated_at: datetime | None

    @classmethod
    def of(cls, organization: Organization) -> SigningIdentity:
        return cls(
            id=organization.id,
            webhook_secret=organization.webhook_secret,
            previous_webhook_secret=organization.previous_webhook_secret,
            secret_rotated_at=organization.secret_rotated_at,
        )

    def verifying_secrets(self, now: datetime, grace: timedelta) -> list[str]:
        """The current secret, plus the previous one while its grace period lasts (the
        rule of :meth:`Organization.verifying_secrets`)."""
        secrets = [self.webhook_secret]
        if (
            self.previous_webhook_secret is not None
            and self.secret_rotated_at is not None
            and now - self.secret_rotated_at <= grace
        ):
            secrets.append(self.previous_webhook_secret)
        return secrets


class OrganizationCache:
    def __init__(self, *, ttl_seconds: float, max_entries: int) -> None:
        self.tokens: ExpiringLRU[str, int] = ExpiringLRU(
            ttl_seconds=ttl_seconds, max_entries=max_entries
        )
        self.companies: ExpiringLRU[str, SigningIdentity] = ExpiringLRU(
            ttl_seconds=ttl_seconds, max_entries=max_entries
        )

    def forget_company(self, company_id: str) -> None:
        self.companies.pop(company_id)
