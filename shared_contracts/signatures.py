"""Standard Webhooks signatures (https://www.standardwebhooks.com), via ``standardwebhooks``.

Headers: ``webhook-id`` (the event id, the same on every retry), ``webhook-timestamp``
(unix seconds) and ``webhook-signature`` (``v1,<base64 HMAC-SHA256>``; a space-separated
list while a secret is being rotated). Secrets are ``whsec_<base64>``.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

TOLERANCE_SECONDS = 5 * 60
SECRET_PREFIX = "whsec_"  # noqa: S105 - the format prefix, not a secret


class SignatureError(Exception):
    """The request is not proven to come from the holder of the secret."""


def generate_secret(num_bytes: int = 32) -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(num_bytes)).decode()


def is_valid_secret(secret: str) -> bool:
    if not secret.startswith(SECRET_PREFIX):
        return False
    try:
        return len(base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)) >= 16
    except ValueError:
        return False


def sign_headers(
    webhook_id: str,
    body: str,
    signing_secrets: Iterable[str],
    *,
    at: datetime | None = None,
) -> dict[str, str]:
    """Headers for one send of ``body``; one signature per secret (rotation)."""
    moment = at or datetime.now(UTC)
    signatures = [
        Webhook(secret).sign(msg_id=webhook_id, timestamp=moment, data=body)
        for secret in signing_secrets
    ]
    if not signatures:
        raise ValueError("at least one signing secret is required")
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": " ".join(signatures),
    }


def verify(body: bytes | str, headers: Mapping[str, str], secret: str) -> None:
    """Raise :class:`SignatureError` unless one listed signature matches ``secret`` and the
    timestamp is within five minutes of now. Malformed headers are a failure, never a crash."""
    lowered = {key.lower(): value for key, value in headers.items()}
    try:
        Webhook(secret).verify(body, lowered, json_parse=False)
    except WebhookVerificationError as error:
        raise SignatureError(str(error)) from error
    except (ValueError, TypeError, UnicodeDecodeError) as error:
        raise SignatureError("malformed signature headers") from error
