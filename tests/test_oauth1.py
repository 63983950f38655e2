"""OAuth 1.0a signing: published examples, and agreement with oauthlib on random requests."""

from __future__ import annotations

from urllib.parse import urlencode

import hypothesis.strategies as st
import pytest
import requests
from hypothesis import given, settings
from oauthlib import oauth1
from requests_oauthlib import OAuth1

from ringbearer.integrations import _oauth1

# RFC 5849 section 3.4.1's example request, written out here.
RFC_URL = "http://example.com/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b"
RFC_FORM = [("c2", ""), ("a3", "2 q")]
RFC_OAUTH = [
    ("oauth_consumer_key", "9djdj82h48djs9d2"),
    ("oauth_token", "kkk9d7dh3k39sjv7"),
    ("oauth_signature_method", "HMAC-SHA1"),
    ("oauth_timestamp", "137131201"),
    ("oauth_nonce", "7d8f3e4a"),
]
RFC_BASE_STRING = (
    "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q"
    "%26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_key"
    "%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_method"
    "%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk9d7dh3k39sjv7"
)

# Twitter's "Creating a signature" walkthrough, written out here.
TWITTER = _oauth1.Credentials(
    consumer_key="xvz1evFS4wEEPTGEFPHBog",
    consumer_secret="kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
    token="370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
    token_secret="LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE",
)
TWITTER_URL = "https://api.twitter.com/1.1/statuses/update.json?include_entities=true"
TWITTER_FORM = [("status", "Hello Ladies + Gentlemen, a signed OAuth request!")]
TWITTER_NONCE = "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg"
TWITTER_TIMESTAMP = 1318622958
TWITTER_BASE_STRING = (
    "POST&https%3A%2F%2Fapi.twitter.com%2F1.1%2Fstatuses%2Fupdate.json&include_entities"
    "%3Dtrue%26oauth_consumer_key%3Dxvz1evFS4wEEPTGEFPHBog%26oauth_nonce"
    "%3DkYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg%26oauth_signature_method%3DHMAC-SHA1"
    "%26oauth_timestamp%3D1318622958%26oauth_token"
    "%3D370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb%26oauth_version%3D1.0"
    "%26status%3DHello%2520Ladies%2520%252B%2520Gentlemen%252C%2520a%2520signed"
    "%2520OAuth%2520request%2521"
)
TWITTER_SIGNATURE = "hCtSmYh+iHYCEqBWrE7C7hYmtUk="


def test_rfc5849_signature_base_string() -> None:
    """The RFC's example request gives the RFC's base string, byte for byte."""
    params = [*_oauth1.query_parameters(RFC_URL), *RFC_FORM, *RFC_OAUTH]
    assert _oauth1.signature_base_string("POST", RFC_URL, params) == RFC_BASE_STRING


def test_twitter_example_base_string_and_signature() -> None:
    """Twitter's published walkthrough: the same base string and the same signature."""
    oauth = _oauth1.protocol_parameters(TWITTER, nonce=TWITTER_NONCE, timestamp=TWITTER_TIMESTAMP)
    params = [*_oauth1.query_parameters(TWITTER_URL), *TWITTER_FORM, *oauth]
    base = _oauth1.signature_base_string("POST", TWITTER_URL, params)
    assert base == TWITTER_BASE_STRING
    assert _oauth1.signature(base, TWITTER.consumer_secret, TWITTER.token_secret) == (
        TWITTER_SIGNATURE
    )


def test_authorization_header_carries_every_protocol_parameter() -> None:
    """The header names every oauth_* parameter, percent-encoded, and round-trips."""
    header = _oauth1.authorization(
        "POST",
        TWITTER_URL,
        TWITTER,
        form=TWITTER_FORM,
        nonce=TWITTER_NONCE,
        timestamp=TWITTER_TIMESTAMP,
    )
    assert header.startswith("OAuth ")
    assert 'oauth_signature="hCtSmYh%2BiHYCEqBWrE7C7hYmtUk%3D"' in header
    assert _oauth1.parse_authorization(header) == {
        "oauth_consumer_key": TWITTER.consumer_key,
        "oauth_nonce": TWITTER_NONCE,
        "oauth_signature_method": "HMAC-SHA1",
        "oauth_timestamp": str(TWITTER_TIMESTAMP),
        "oauth_token": TWITTER.token,
        "oauth_version": "1.0",
        "oauth_signature": TWITTER_SIGNATURE,
    }


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("HTTP://Example.COM:80/r%20v/X?id=123", "http://example.com/r%20v/X"),
        ("https://www.example.net:8080/?q=1", "https://www.example.net:8080/"),
        ("https://api.x.com:443", "https://api.x.com/"),
        ("http://[::1]:8700/x/2/tweets", "http://[::1]:8700/x/2/tweets"),
    ],
)
def test_base_string_uri(url: str, base: str) -> None:
    """Scheme and host lower-cased, default ports and the query dropped (RFC 5849 3.4.1.2)."""
    assert _oauth1.base_string_uri(url) == base


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("Ladies + Gentlemen", "Ladies%20%2B%20Gentlemen"),
        ("-._~", "-._~"),
        ("é☃", "%C3%A9%E2%98%83"),
    ],
)
def test_percent_encoding_keeps_only_the_unreserved_set(text: str, encoded: str) -> None:
    """UTF-8 bytes, everything but ALPHA DIGIT - . _ ~ encoded, in upper-case hex."""
    assert _oauth1.percent_encode(text) == encoded


@pytest.mark.parametrize("header", ["Bearer abc", "OAuth broken", 'OAuth a="1" b="2"'])
def test_parse_authorization_refuses_what_is_not_an_oauth_header(header: str) -> None:
    """Another scheme, or parameters not in name="value" form separated by commas, is None."""
    assert _oauth1.parse_authorization(header) is None


TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
PAIRS = st.lists(st.tuples(TEXT.filter(bool), TEXT), max_size=4)


@settings(max_examples=30, derandomize=True, deadline=None)
@given(
    keys=st.tuples(TEXT.filter(bool), TEXT, TEXT.filter(bool), TEXT),
    query=PAIRS,
    form=PAIRS,
    method=st.sampled_from(["POST", "PUT"]),  # oauthlib refuses a GET with a body
    path=st.sampled_from(["/2/tweets", "/1.1/a b/c", "/"]),
    nonce=st.text("abcdef0123456789", min_size=8, max_size=32),
    timestamp=st.integers(0, 2**31),
)
def test_signature_agrees_with_oauthlib(
    keys: tuple[str, str, str, str],
    query: list[tuple[str, str]],
    form: list[tuple[str, str]],
    method: str,
    path: str,
    nonce: str,
    timestamp: int,
) -> None:
    """For random keys, query and form parameters, oauthlib signs exactly as we do."""
    credentials = _oauth1.Credentials(*keys)
    url = "https://api.example.com" + path.replace(" ", "%20")
    if query:
        url += "?" + urlencode(query)
    body = urlencode(form) if form else None
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if form else {}
    client = oauth1.Client(
        credentials.consumer_key,
        client_secret=credentials.consumer_secret,
        resource_owner_key=credentials.token,
        resource_owner_secret=credentials.token_secret,
        nonce=nonce,
        timestamp=str(timestamp),
    )
    _, signed, _ = client.sign(url, http_method=method, body=body, headers=headers)
    theirs = _oauth1.parse_authorization(signed["Authorization"])
    ours = _oauth1.authorization(
        method, url, credentials, form=form, nonce=nonce, timestamp=timestamp
    )
    assert theirs is not None
    assert _oauth1.parse_authorization(ours) == theirs


def test_json_request_signed_as_requests_oauthlib_signs_it() -> None:
    """A JSON body is no parameter: requests-oauthlib (tweepy's signer) signs as we do."""
    url = "https://api.x.com/2/tweets?expansions=author_id"
    auth = OAuth1(
        "ck", "cs", "tk", "ts", nonce="n0nce", timestamp="1700000000", signature_type="AUTH_HEADER"
    )
    prepared = requests.Request("POST", url, json={"text": "hello"}).prepare()
    signed = auth(prepared).headers["Authorization"]
    credentials = _oauth1.Credentials("ck", "cs", "tk", "ts")
    ours = _oauth1.authorization("POST", url, credentials, nonce="n0nce", timestamp=1700000000)
    theirs = _oauth1.parse_authorization(signed if isinstance(signed, str) else signed.decode())
    assert _oauth1.parse_authorization(ours) == theirs
