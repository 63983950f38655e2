"""OAuth 1.0a request signing (RFC 5849) with HMAC-SHA1, as X's user context wants it.

Only what a client that already holds its access token needs: no token
dance, no RSA or PLAINTEXT. A signed request carries::

    Authorization: OAuth oauth_consumer_key="...", oauth_nonce="...",
        oauth_signature="...", oauth_signature_method="HMAC-SHA1",
        oauth_timestamp="...", oauth_token="...", oauth_version="1.0"

The signature covers the method, the URL without its query (section
3.4.1.2) and every request parameter (section 3.4.1.3): the query's, a
form-encoded body's and the ``oauth_*`` protocol parameters. A JSON body is
not a parameter and is not signed: only an
``application/x-www-form-urlencoded`` body is (section 3.4.1.3.1).

The nonce and the timestamp can be given, so that tests can reproduce a
published signature; the simulator uses :func:`parse_authorization` and
:func:`signature` to check what a client sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import attrs

Params = Sequence[tuple[str, str]]

SIGNATURE_METHOD = "HMAC-SHA1"
VERSION = "1.0"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 5849 section 3.5.1: auth-param = name "=" quoted-string, comma separated.
_AUTH_PARAM = re.compile(r'\s*([^\s=,]+)\s*=\s*"([^"]*)"\s*(?:,|$)')


@attrs.frozen
class Credentials:
    """The client's and the user's key pairs; the two secrets stay out of repr."""

    consumer_key: str
    consumer_secret: str = attrs.field(repr=False)
    token: str
    token_secret: str = attrs.field(repr=False)


def percent_encode(text: str) -> str:
    """Section 3.6: UTF-8, then every byte but the RFC 3986 unreserved set as ``%XX``."""
    return quote(text, safe="-._~")


def base_string_uri(url: str) -> str:
    """Section 3.4.1.2: scheme and host in lower case, no default port, no query or fragment."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    port = parts.port
    authority = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    return f"{scheme}://{authority}{parts.path or '/'}"


def query_parameters(url: str) -> list[tuple[str, str]]:
    """The URL's query as decoded name/value pairs, blank values kept (section 3.4.1.3.1)."""
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


def normalized_parameters(params: Iterable[tuple[str, str]]) -> str:
    """Section 3.4.1.3.2: encode each name and value, sort the pairs, join them."""
    encoded = sorted((percent_encode(name), percent_encode(value)) for name, value in params)
    return "&".join(f"{name}={value}" for name, value in encoded)


def signature_base_string(method: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Section 3.4.1.1: method, base string URI and normalized parameters, each encoded."""
    parts = (method.upper(), base_string_uri(url), normalized_parameters(params))
    return "&".join(percent_encode(part) for part in parts)


def signature(base_string: str, consumer_secret: str, token_secret: str) -> str:
    """Section 3.4.2: HMAC-SHA1 keyed with both encoded secrets, in base64."""
    key = f"{percent_encode(consumer_secret)}&{percent_encode(token_secret)}"
    digest = hmac.new(key.encode(), base_string.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def protocol_parameters(
    credentials: Credentials, *, nonce: str | None = None, timestamp: int | None = None
) -> list[tuple[str, str]]:
    """The ``oauth_*`` parameters of one request, all but the signature."""
    return [
        ("oauth_consumer_key", credentials.consumer_key),
        ("oauth_nonce", nonce if nonce is not None else secrets.token_hex(16)),
        ("oauth_signature_method", SIGNATURE_METHOD),
        ("oauth_timestamp", str(timestamp if timestamp is not None else int(time.time()))),
        ("oauth_token", credentials.token),
        ("oauth_version", VERSION),
    ]


def authorization(
    method: str,
    url: str,
    credentials: Credentials,
    *,
    form: Params = (),
    nonce: str | None = None,
    timestamp: int | None = None,
) -> str:
    """The ``Authorization`` value for a request; ``form`` is a form-encoded body's fields."""
    oauth = protocol_parameters(credentials, nonce=nonce, timestamp=timestamp)
    base = signature_base_string(method, url, [*query_parameters(url), *form, *oauth])
    signed = signature(base, credentials.consumer_secret, credentials.token_secret)
    fields = [*oauth, ("oauth_signature", signed)]
    return "OAuth " + ", ".join(f'{name}="{percent_encode(value)}"' for name, value in fields)


def parse_authorization(header: str) -> dict[str, str] | None:
    """The decoded parameters of an ``OAuth`` header (section 3.5.1), None if it is not one."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "oauth":
        return None
    params: dict[str, str] = {}
    position = 0
    rest = rest.strip()
    while position < len(rest):
        found = _AUTH_PARAM.match(rest, position)
        if found is None or found.end() == position:
            return None
        params[unquote(found.group(1))] = unquote(found.group(2))
        position = found.end()
    return params
