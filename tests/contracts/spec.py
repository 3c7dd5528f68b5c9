"""The Standard Webhooks verification, written from the specification alone
(https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md)
so that our signatures are checked by code that shares nothing with the signer: the
``svix`` package's verifier delegates to ``standardwebhooks``, the library we sign with.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping

TOLERANCE_SECONDS = 5 * 60


class SpecVerificationError(Exception):
    pass


def verify_per_spec(body: bytes, headers: Mapping[str, str], secret: str) -> None:
    """Raise unless one ``v1`` signature in ``webhook-signature`` is the base64 HMAC-SHA256
    of ``{webhook-id}.{webhook-timestamp}.{body}`` under the ``whsec_`` secret, and the
    timestamp is within five minutes of now."""
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        message_id = lowered["webhook-id"]
        timestamp = lowered["webhook-timestamp"]
        signatures = lowered["webhook-signature"]
    except KeyError as missing:
        raise SpecVerificationError(f"missing header {missing}") from None
    if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        raise SpecVerificationError("timestamp outside the tolerance")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for entry in signatures.split(" "):
        version, _, signature = entry.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return
    raise SpecVerificationError("no matching v1 signature")
