"""Webhook signatures, checked against the providers' official libraries as oracles.

Svix and Standard Webhooks sign with their own ``Webhook.sign`` and check with
their own ``verify``; Twilio's ``RequestValidator`` computes and validates;
Mailgun has no library here, so its documented construction is written out.
Ours must accept what they sign, and refuse whatever they refuse.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import time
from collections.abc import Mapping

import pytest
import standardwebhooks
import svix.webhooks
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from ringbearer._secrets import Secret
from ringbearer.listener._signatures import (
    Refused,
    Verification,
    Verified,
    Why,
    svix_key,
    twilio_signature,
    verify_mailgun,
    verify_svix,
    verify_twilio,
)

TOLERANCE = 300.0
SECRET = "whsec_" + base64.b64encode(b"a key of thirty-two bytes, exact").decode()
OTHER = "whsec_" + base64.b64encode(b"someone else's key, also 32 byte").decode()
BODY = b'{"type":"email.delivered","created_at":"2026-02-22T23:41:12.126Z","data":{}}'

keys = st.binary(min_size=1, max_size=64).map(lambda raw: "whsec_" + base64.b64encode(raw).decode())
bodies = st.binary(max_size=2048)
message_ids = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40
)


def svix_signed(
    secret: str, body: bytes, *, msg_id: str = "msg_1", at: float | None = None
) -> dict[str, str]:
    """The headers Svix would send, signed by the official svix library."""
    when = datetime.datetime.fromtimestamp(time.time() if at is None else at, datetime.UTC)
    signature = svix.webhooks.Webhook(secret).sign(msg_id, when, body.decode("latin-1"))
    return {
        "svix-id": msg_id,
        "svix-timestamp": str(int(when.timestamp())),
        "svix-signature": signature,
    }


def ours(
    secret: str, headers: Mapping[str, str], body: bytes, *, now: float | None = None
) -> Verification:
    """Our verdict on a delivery, at ``now`` (the real clock, as the libraries use)."""
    return verify_svix(
        svix_key(Secret(secret)),
        headers,
        body,
        now=time.time() if now is None else now,
        tolerance=TOLERANCE,
    )


def svix_accepts(secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    try:
        svix.webhooks.Webhook(secret).verify(body, dict(headers))
    except svix.webhooks.WebhookVerificationError:
        return False
    return True


# --- Svix (Resend) ---------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(secret=keys, body=bodies, msg_id=message_ids)
def test_what_svix_signs_we_accept(secret: str, body: bytes, msg_id: str) -> None:
    """Any key, body and id the svix library signs, we verify (over the raw bytes)."""
    text_body = body.decode("latin-1").encode("utf-8")  # svix signs the UTF-8 of its str
    headers = svix_signed(secret, body, msg_id=msg_id)
    assert svix_accepts(secret, headers, text_body)
    assert ours(secret, headers, text_body) == Verified()


@settings(max_examples=60, deadline=None)
@given(secret=keys, body=bodies, msg_id=message_ids)
def test_what_standard_webhooks_signs_we_accept(secret: str, body: bytes, msg_id: str) -> None:
    """Standard Webhooks' own signer, with its webhook-* header names, verifies too."""
    signer = standardwebhooks.Webhook(secret)
    now = datetime.datetime.now(datetime.UTC)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signer.sign(msg_id, now, body),
    }
    signer.verify(body, headers, json_parse=False)  # the oracle takes it
    assert ours(secret, headers, body) == Verified()


@settings(max_examples=40, deadline=None)
@given(body=bodies, flip=st.integers(min_value=0, max_value=2047))
def test_a_tampered_body_is_forged_for_both(body: bytes, flip: int) -> None:
    """Changing any byte of the body breaks the signature, for the library and for us."""
    headers = svix_signed(SECRET, body)
    signed = body.decode("latin-1").encode("utf-8")
    if not signed:
        tampered = b"x"
    else:
        i = flip % len(signed)
        tampered = signed[:i] + bytes([signed[i] ^ 0x01]) + signed[i + 1 :]
    assert not svix_accepts(SECRET, headers, tampered)
    assert ours(SECRET, headers, tampered) == Refused(Why.FORGED, "no v1 signature matches")


def test_a_wrong_key_is_forged_for_both() -> None:
    """Signed under another key: both refuse."""
    headers = svix_signed(OTHER, BODY)
    assert not svix_accepts(SECRET, headers, BODY)
    verdict = ours(SECRET, headers, BODY)
    assert isinstance(verdict, Refused) and verdict.why is Why.FORGED


@pytest.mark.parametrize("offset", [-310.0, 310.0, -86_400.0, 10 * 86_400.0])
def test_stale_and_future_deliveries_are_refused_by_both(offset: float) -> None:
    """A genuine signature more than five minutes from now is stale, either way."""
    headers = svix_signed(SECRET, BODY, at=time.time() + offset)
    assert not svix_accepts(SECRET, headers, BODY)
    verdict = ours(SECRET, headers, BODY)
    assert isinstance(verdict, Refused) and verdict.why is Why.STALE


@pytest.mark.parametrize("offset", [-290.0, 290.0])
def test_within_the_tolerance_both_accept(offset: float) -> None:
    """Clocks a few minutes apart are fine."""
    headers = svix_signed(SECRET, BODY, at=time.time() + offset)
    assert svix_accepts(SECRET, headers, BODY)
    assert ours(SECRET, headers, BODY) == Verified()


def test_the_tolerance_is_exact_on_our_clock() -> None:
    """300 s away passes, 301 s does not: the clock is injected, so the edge is testable."""
    at = 1_800_000_000
    headers = svix_signed(SECRET, BODY, at=at)
    assert ours(SECRET, headers, BODY, now=at + 300) == Verified()
    assert ours(SECRET, headers, BODY, now=at - 300) == Verified()
    assert isinstance(ours(SECRET, headers, BODY, now=at + 301), Refused)
    assert isinstance(ours(SECRET, headers, BODY, now=at - 301), Refused)


def test_rotation_any_listed_signature_passes() -> None:
    """While a secret rotates, the header lists several v1 signatures; one match is enough."""
    old = svix_signed(OTHER, BODY)
    new = svix_signed(SECRET, BODY)
    both = dict(new, **{"svix-signature": f"{old['svix-signature']} {new['svix-signature']}"})
    assert svix_accepts(SECRET, both, BODY)
    assert ours(SECRET, both, BODY) == Verified()
    only_old = dict(new, **{"svix-signature": f"{old['svix-signature']} v2,whatever"})
    assert not svix_accepts(SECRET, only_old, BODY)
    assert isinstance(ours(SECRET, only_old, BODY), Refused)


@pytest.mark.parametrize(
    "change",
    [
        {"svix-id": ""},
        {"svix-timestamp": ""},
        {"svix-signature": ""},
        {"svix-timestamp": "soon"},
        {"svix-timestamp": "1e9"},
        {"svix-timestamp": "9" * 5000},
    ],
    ids=["no-id", "no-timestamp", "no-signature", "word", "exponent", "huge"],
)
def test_malformed_headers_are_refused_by_both(change: dict[str, str]) -> None:
    """What cannot be checked is refused, as malformed, never an exception."""
    headers = {k: v for k, v in {**svix_signed(SECRET, BODY), **change}.items() if v}
    assert not svix_accepts(SECRET, headers, BODY)
    verdict = ours(SECRET, headers, BODY)
    assert isinstance(verdict, Refused) and verdict.why is Why.MALFORMED


def test_the_id_and_timestamp_are_signed() -> None:
    """Swapping in another id or timestamp breaks the signature: they are part of it."""
    headers = svix_signed(SECRET, BODY, msg_id="msg_a", at=1_800_000_000)
    for change in ({"svix-id": "msg_b"}, {"svix-timestamp": "1800000001"}):
        assert isinstance(ours(SECRET, {**headers, **change}, BODY, now=1_800_000_000), Refused)


def test_a_secret_that_is_not_base64_is_refused_at_once() -> None:
    """A mistyped secret fails when the source is built, not at the first event."""
    with pytest.raises(ValueError, match="base64"):
        svix_key(Secret("whsec_not*base64!"))
    assert svix_key(Secret(SECRET)) == b"a key of thirty-two bytes, exact"
    unpadded = "whsec_" + base64.b64encode(b"ab").decode().rstrip("=")
    assert svix_key(Secret(unpadded)) == b"ab"


# --- Mailgun ---------------------------------------------------------------------------


def mailgun_signature(key: str, timestamp: str, token: str) -> dict[str, object]:
    """The documented construction: hex HMAC-SHA256 of timestamp then token."""
    digest = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {"timestamp": timestamp, "token": token, "signature": digest}


tokens = st.text(alphabet="0123456789abcdef", min_size=50, max_size=50)
signing_keys = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=8, max_size=64
)


@settings(max_examples=60, deadline=None)
@given(key=signing_keys, token=tokens, stamp=st.integers(min_value=1, max_value=2**40))
def test_mailgun_signatures_verify(key: str, token: str, stamp: int) -> None:
    """Signed as Mailgun documents, with the timestamp a string or a number."""
    signature = mailgun_signature(key, str(stamp), token)
    assert verify_mailgun(Secret(key), {"signature": signature}) == Verified()
    as_int = dict(signature, timestamp=stamp)
    assert verify_mailgun(Secret(key), {"signature": as_int}) == Verified()


@settings(max_examples=40, deadline=None)
@given(key=signing_keys, token=tokens, other=tokens)
def test_mailgun_refuses_another_key_or_token(key: str, token: str, other: str) -> None:
    """The signature covers timestamp and token under the key: change any, it is forged."""
    signature = mailgun_signature(key, "1529006854", token)
    forged = [
        (Secret(key + "x"), signature),
        (Secret(key), dict(signature, timestamp="1529006855")),
    ]
    if other != token:
        forged.append((Secret(key), dict(signature, token=other)))
    for secret, offered in forged:
        verdict = verify_mailgun(secret, {"signature": offered})
        assert isinstance(verdict, Refused) and verdict.why is Why.FORGED


@pytest.mark.parametrize(
    "document",
    [
        None,
        [],
        {},
        {"signature": "abc"},
        {"signature": {"timestamp": "1", "token": "t"}},
        {"signature": {"timestamp": True, "token": "t", "signature": "s"}},
        {"signature": {"timestamp": 1.5, "token": "t", "signature": "s"}},
        {"signature": {"timestamp": "1", "token": "", "signature": "s"}},
    ],
)
def test_mailgun_without_a_usable_signature_is_malformed(document: object) -> None:
    """No signature object, or one missing a part: malformed, never an exception."""
    verdict = verify_mailgun(Secret("key"), document)
    assert isinstance(verdict, Refused) and verdict.why is Why.MALFORMED


# --- Twilio ----------------------------------------------------------------------------

TOKEN = "12345678901234567890123456789012"
URL = "https://hooks.example.com/webhooks/twilio"
FORM = {
    "MessageSid": "SM0123456789abcdef0123456789abcdef",
    "MessageStatus": "undelivered",
    "ErrorCode": "30003",
    "To": "+15005550001",
    "From": "+15005550006",
    "AccountSid": "AC0123456789abcdef0123456789abcdef",
    "ApiVersion": "2010-04-01",
}

form_values = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)  # no lone surrogates
forms = st.dictionaries(
    st.text(alphabet="ABCDEFGHIJabcdefgh", min_size=1, max_size=12), form_values, max_size=8
)


@settings(max_examples=60, deadline=None)
@given(form=forms)
def test_what_twilio_signs_we_accept(form: dict[str, str]) -> None:
    """Twilio's own compute_signature over any form; ours verifies and computes the same."""
    validator = RequestValidator(TOKEN)
    signature = validator.compute_signature(URL, form)
    assert twilio_signature(Secret(TOKEN), URL, list(form.items())) == signature
    assert verify_twilio(Secret(TOKEN), URL, list(form.items()), signature) == Verified()


@pytest.mark.parametrize(
    ("signed_url", "called_url"),
    [
        (
            "https://hooks.example.com/webhooks/twilio",
            "https://hooks.example.com:443/webhooks/twilio",
        ),
        (
            "https://hooks.example.com:443/webhooks/twilio",
            "https://hooks.example.com/webhooks/twilio",
        ),
        ("http://127.0.0.1:8787/webhooks/twilio?x=1", "http://127.0.0.1:8787/webhooks/twilio?x=1"),
        ("http://127.0.0.1/webhooks/twilio", "http://127.0.0.1:80/webhooks/twilio"),
    ],
)
def test_the_url_with_and_without_its_port(signed_url: str, called_url: str) -> None:
    """As twilio-python does, the port may or may not be in what Twilio signed."""
    validator = RequestValidator(TOKEN)
    signature = validator.compute_signature(signed_url, FORM)
    assert validator.validate(called_url, FORM, signature)
    assert verify_twilio(Secret(TOKEN), called_url, list(FORM.items()), signature) == Verified()


@pytest.mark.parametrize(
    ("token", "url", "form"),
    [
        ("another token" + "0" * 19, URL, FORM),
        (TOKEN, URL + "x", FORM),
        (TOKEN, "http://hooks.example.com/webhooks/twilio", FORM),
        (TOKEN, URL, dict(FORM, MessageStatus="delivered")),
        (TOKEN, URL, dict(FORM, Extra="1")),
        (TOKEN, URL, {k: v for k, v in FORM.items() if k != "ErrorCode"}),
    ],
    ids=["wrong-token", "other-path", "other-scheme", "changed", "added", "removed"],
)
def test_twilio_refusals_match_the_validator(token: str, url: str, form: dict[str, str]) -> None:
    """Whatever the official validator refuses, we refuse as forged."""
    signature = RequestValidator(TOKEN).compute_signature(URL, FORM)
    assert not RequestValidator(token).validate(url, form, signature)
    verdict = verify_twilio(Secret(token), url, list(form.items()), signature)
    assert isinstance(verdict, Refused) and verdict.why is Why.FORGED


def test_twilio_without_a_signature_is_malformed() -> None:
    """No header at all: nothing to check."""
    for offered in (None, ""):
        verdict = verify_twilio(Secret(TOKEN), URL, list(FORM.items()), offered)
        assert isinstance(verdict, Refused) and verdict.why is Why.MALFORMED
    bad_port = verify_twilio(Secret(TOKEN), "https://h:notaport/x", [], "sig")
    assert isinstance(bad_port, Refused) and bad_port.why is Why.MALFORMED


def test_twilio_sorts_names_and_repeated_values() -> None:
    """Parameters are signed sorted by name, repeated names with their values sorted."""
    pairs = [("b", "2"), ("a", "9"), ("a", "1")]
    expected = base64.b64encode(
        hmac.new(TOKEN.encode(), (URL + "a1a9b2").encode(), hashlib.sha1).digest()
    ).decode()
    assert twilio_signature(Secret(TOKEN), URL, pairs) == expected
