"""Unsubscribe tokens name an address and a category, signed; the RFC 8058 headers carry them."""

from __future__ import annotations

import string
import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringbearer._secrets import Secret
from ringbearer.deliverability._unsubscribe import (
    HEADER_LINE_MAX,
    SANDBOX_SECRET,
    UnsubscribeTokens,
    list_unsubscribe_headers,
)

TOKENS = UnsubscribeTokens(Secret("the daemon's own unsubscribe secret"))
URL_SAFE = set(string.ascii_letters + string.digits + "-_.")

local_parts = st.text(
    alphabet=string.ascii_letters + string.digits + ".+_-'", min_size=1, max_size=64
)
domains = st.from_regex(r"[a-z0-9]{1,20}(\.[a-z0-9]{1,10}){1,3}", fullmatch=True)
addresses = st.builds(lambda local, domain: f"{local}@{domain}", local_parts, domains)
categories = st.from_regex(r"[a-z0-9_-]{1,24}", fullmatch=True)


@settings(max_examples=100)
@given(address=addresses, category=categories)
def test_a_token_reads_back_as_the_normalised_address_and_category(
    address: str, category: str
) -> None:
    """make then read gives the address as suppressions keep it, and the category."""
    token = TOKENS.make(f"  {address.upper()} ", category)
    assert TOKENS.read(token) == (address.lower(), category)


@settings(max_examples=100)
@given(address=addresses, category=categories)
def test_a_token_sits_in_a_url_path_as_it_is(address: str, category: str) -> None:
    """Only unreserved characters: no padding, nothing a URL would escape."""
    token = TOKENS.make(address, category)
    assert set(token) <= URL_SAFE
    assert urllib.parse.quote(token, safe="") == token


@settings(max_examples=100)
@given(
    address=addresses, at=st.integers(min_value=0, max_value=10_000), new=st.sampled_from("AbZ09-_")
)
def test_any_change_to_a_token_is_refused(address: str, at: int, new: str) -> None:
    """Changing any one character (or cutting it short) makes it unreadable."""
    token = TOKENS.make(address, "marketing")
    i = at % len(token)
    changed = token[:i] + new + token[i + 1 :]
    if changed != token:
        with pytest.raises(ValueError):
            TOKENS.read(changed)
    with pytest.raises(ValueError):
        TOKENS.read(token[:i])


def test_a_token_from_another_secret_is_refused() -> None:
    """Only the daemon's secret signs tokens it accepts: the sandbox's stand-in is not it."""
    theirs = UnsubscribeTokens(SANDBOX_SECRET).make("ann@example.com", "marketing")
    with pytest.raises(ValueError, match="signature"):
        TOKENS.read(theirs)
    assert UnsubscribeTokens(SANDBOX_SECRET).read(theirs) == ("ann@example.com", "marketing")


def test_another_category_under_the_same_signature_is_refused() -> None:
    """The category is signed with the address: a marketing token cannot end transactional mail."""
    token = TOKENS.make("ann@example.com", "marketing")
    version, payload, mac = token.split(".")
    other = TOKENS.make("ann@example.com", "transactional").split(".")[1]
    with pytest.raises(ValueError):
        TOKENS.read(f"{version}.{other}.{mac}")
    assert payload != other


@settings(max_examples=200)
@given(garbage=st.text(max_size=300))
def test_garbage_is_a_value_error_never_anything_else(garbage: str) -> None:
    """Whatever arrives in the path, reading it fails cleanly."""
    with pytest.raises(ValueError):
        TOKENS.read(garbage)


@pytest.mark.parametrize(
    ("address", "category"),
    [("", "marketing"), ("   ", "marketing"), ("ann@example.com", ""), ("a@b.c", "x\ny")],
)
def test_a_token_needs_an_address_and_a_one_line_category(address: str, category: str) -> None:
    with pytest.raises(ValueError):
        TOKENS.make(address, category)


def test_the_rfc_8058_headers() -> None:
    """The HTTPS URL in angle brackets, then mailto when given; the one-click POST pair."""
    url = "https://hooks.example.com/unsubscribe/" + TOKENS.make("ann@example.com", "marketing")
    assert list_unsubscribe_headers(url, "unsubscribe@example.com") == {
        "List-Unsubscribe": f"<{url}>, <mailto:unsubscribe@example.com>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert (
        list_unsubscribe_headers(url, "mailto:u@example.com?subject=stop")["List-Unsubscribe"]
        == f"<{url}>, <mailto:u@example.com?subject=stop>"
    )
    assert list_unsubscribe_headers(url) == {
        "List-Unsubscribe": f"<{url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


@pytest.mark.parametrize(
    ("url", "mailto"),
    [
        ("http://hooks.example.com/unsubscribe/x", ""),  # RFC 8058 needs HTTPS
        ("http://127.0.0.1.example.com/unsubscribe/x", ""),
        ("ftp://127.0.0.1/unsubscribe/x", ""),
        ("https://hooks.example.com/unsubscribe/x\r\nBcc: all", ""),
        ("https://hooks.example.com/u/x>, <https://evil.example", ""),
        ("https://hooks.example.com/u/x", "a@b.c\r\nX: y"),
    ],
)
def test_headers_refuse_what_would_break_them(url: str, mailto: str) -> None:
    """No plain HTTP, no header injection, no second URL smuggled in."""
    with pytest.raises(ValueError):
        list_unsubscribe_headers(url, mailto)


def test_headers_stay_on_one_line_under_998_characters() -> None:
    """The longest address there is still fits; a value that would not is refused, not folded."""
    longest = "a" * 64 + "@" + ".".join(["b" * 63] * 3) + ".cc"
    url = "https://hooks.example.com/unsubscribe/" + TOKENS.make(longest, "marketing")
    value = list_unsubscribe_headers(url, "unsubscribe@example.com")["List-Unsubscribe"]
    assert len("List-Unsubscribe: " + value) <= HEADER_LINE_MAX
    assert "\n" not in value
    with pytest.raises(ValueError, match="998"):
        list_unsubscribe_headers("https://hooks.example.com/" + "u" * 990)


def test_a_token_has_one_spelling() -> None:
    """The unused low bits of the last base64 character are not a second valid token."""
    token = TOKENS.make("ann@example.com", "marketing")
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    last = alphabet.index(token[-1])
    twin = token[:-1] + alphabet[last ^ 1]  # a 43-character MAC leaves two bits unused
    with pytest.raises(ValueError):
        TOKENS.read(twin)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8787/unsubscribe/x",
        "http://[::1]:8787/unsubscribe/x",
        "http://localhost/u/x",
    ],
)
def test_plain_http_is_taken_on_loopback_only(url: str) -> None:
    """The sandbox's listener has no TLS; it is reached on this machine alone."""
    assert list_unsubscribe_headers(url)["List-Unsubscribe"] == f"<{url}>"
