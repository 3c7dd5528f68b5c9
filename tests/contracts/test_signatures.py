"""Our Standard Webhooks signatures, checked by the svix verifier and by an implementation
written from the specification alone (tests/contracts/spec.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import WebhookVerificationError
from svix.webhooks import Webhook as SvixWebhook

from shared_contracts.signatures import (
    SignatureError,
    generate_secret,
    is_valid_secret,
    sign_headers,
    verify,
)
from tests.contracts.spec import SpecVerificationError, verify_per_spec

SECRET = generate_secret()
BODY = '{"type":"qontak.crm.deal.create","timestamp":"2026-11-27T21:05:29.123456Z","data":{}}'


def test_svix_accepts_our_headers() -> None:
    headers = sign_headers("msg_1", BODY, [SECRET])
    SvixWebhook(SECRET).verify(BODY, headers)


def test_the_spec_implementation_accepts_our_headers() -> None:
    headers = sign_headers("msg_1", BODY, [SECRET])
    verify_per_spec(BODY.encode(), headers, SECRET)


@given(
    webhook_id=st.from_regex(r"msg_[0-9a-f]{1,32}", fullmatch=True),
    body=st.text(max_size=300),
)
def test_any_body_signed_by_us_verifies_per_the_spec(webhook_id: str, body: str) -> None:
    verify_per_spec(body.encode(), sign_headers(webhook_id, body, [SECRET]), SECRET)


def test_headers_carry_the_id_and_the_unix_timestamp() -> None:
    moment = datetime(2026, 11, 27, 21, 5, 29, tzinfo=UTC)
    headers = sign_headers("msg_1", BODY, [SECRET], at=moment)
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(int(moment.timestamp()))
    assert headers["webhook-signature"].startswith("v1,")


def test_during_rotation_each_secret_has_its_own_signature() -> None:
    old, new = generate_secret(), generate_secret()
    headers = sign_headers("msg_1", BODY, [new, old])
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        SvixWebhook(secret).verify(BODY, headers)
        verify_per_spec(BODY.encode(), headers, secret)


def test_a_tampered_body_is_refused() -> None:
    headers = sign_headers("msg_1", BODY, [SECRET])
    tampered = BODY.replace("create", "delete")
    with pytest.raises(SignatureError):
        verify(tampered, headers, SECRET)
    with pytest.raises(WebhookVerificationError):
        SvixWebhook(SECRET).verify(tampered, headers)


def test_another_secret_is_refused() -> None:
    headers = sign_headers("msg_1", BODY, [SECRET])
    with pytest.raises(SignatureError):
        verify(BODY, headers, generate_secret())


def test_a_timestamp_more_than_five_minutes_old_is_refused() -> None:
    stale = datetime.now(UTC) - timedelta(minutes=6)
    headers = sign_headers("msg_1", BODY, [SECRET], at=stale)
    with pytest.raises(SignatureError):
        verify(BODY, headers, SECRET)
    with pytest.raises(SpecVerificationError):
        verify_per_spec(BODY.encode(), headers, SECRET)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"webhook-id": "msg_1", "webhook-timestamp": "soon", "webhook-signature": "v1,x"},
        {"webhook-id": "msg_1", "webhook-timestamp": "1", "webhook-signature": "garbage"},
    ],
)
def test_malformed_headers_are_a_verification_failure(headers: dict[str, str]) -> None:
    with pytest.raises(SignatureError):
        verify(BODY, headers, SECRET)


def test_signing_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="at least one signing secret"):
        sign_headers("msg_1", BODY, [])


@pytest.mark.parametrize(
    ("secret", "valid"),
    [
        (generate_secret(), True),
        ("whsec_" + "A" * 22 + "==", True),  # 16 bytes
        ("whsec_" + "A" * 20, False),  # 15 bytes: too short
        ("whsec_not base64!", False),
        ("c2VjcmV0c2VjcmV0c2VjcmV0", False),  # no prefix
    ],
)
def test_only_whsec_base64_secrets_of_16_bytes_or_more_are_valid(secret: str, valid: bool) -> None:
    assert is_valid_secret(secret) is valid
