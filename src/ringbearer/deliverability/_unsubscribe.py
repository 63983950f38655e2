"""One-click unsubscribe (RFC 8058): signed tokens, and the headers that carry them.

RFC 8058 forbids cookies or any other context on the unsubscribe POST, so the
URL alone must say who leaves which mail; and it must be hard to forge, or
anyone could unsubscribe anyone. A token therefore names the normalised
address and the category and carries an HMAC-SHA256 over both, under a key
only the daemon holds. It is not encrypted: the mailbox provider that shows
the button already knows the address. Nothing expires: a person may press
the button months after the mail came.

A token is ``v1.<payload>.<mac>``, both parts unpadded base64url, so it sits
in a URL path as it is (no ``=``, ``+`` or ``/`` to escape).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
import urllib.parse
from typing import Final

import attrs

from .._secrets import Secret
from ._model import normalise_address

VERSION: Final = "v1"
# Signs tokens when no secret is configured, in the sandbox only: anyone who
# reads this source can forge them, which is harmless against simulated mail.
SANDBOX_SECRET: Final = Secret("ringbearer-sandbox-unsubscribe-tokens-are-not-secret")
HEADER_LINE_MAX: Final = 998  # RFC 5322 §2.1.1: a line, its field name included
ONE_CLICK: Final = "List-Unsubscribe=One-Click"
# Separates the purpose from the payload under the MAC, so this key signs
# nothing that could be mistaken for another use of the same secret.
_PURPOSE: Final = b"ringbearer unsubscribe v1\n"
_SEPARATOR: Final = "\n"
_TOKEN: Final = re.compile(r"v1\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{43})")


@attrs.frozen
class UnsubscribeTokens:
    """Makes and reads the signed tokens of unsubscribe links."""

    secret: Secret

    def make(self, address: str, category: str) -> str:
        """A URL-safe token naming the normalised ``address`` and ``category``."""
        if not category or _SEPARATOR in category or _SEPARATOR in address:
            raise ValueError("a category and an address are one line each")
        normal = normalise_address(address)
        if not normal:
            raise ValueError("an unsubscribe token needs an address")
        payload = f"{category}{_SEPARATOR}{normal}".encode()
        return f"{VERSION}.{_encode(payload)}.{_encode(self._mac(payload))}"

    def read(self, token: str) -> tuple[str, str]:
        """``(address, category)`` of a token we made; ValueError for anything else."""
        found = _TOKEN.fullmatch(token)
        if found is None:
            raise ValueError("not an unsubscribe token")
        payload, mac = _decode(found[1]), _decode(found[2])
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise ValueError("the token's signature does not match")
        # Signed by us, so it is what make() wrote; decoded defensively all the same.
        category, sep, address = payload.decode("utf-8", "replace").partition(_SEPARATOR)
        if not sep or not category or not address:
            raise ValueError("the token names no address and category")
        return address, category

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self.secret.reveal().encode(), _PURPOSE + payload, hashlib.sha256).digest()


def list_unsubscribe_headers(url: str, mailto: str = "") -> dict[str, str]:
    """``List-Unsubscribe`` (the HTTPS URL, then ``mailto:`` if given) and the one-click POST.

    RFC 8058 needs one HTTPS URI in ``List-Unsubscribe``; plain HTTP is taken
    only on loopback, where the sandbox's listener runs without TLS. Each value
    stays on one line (a folded one has broken DKIM on some relays), so a value
    that would pass the 998-character line limit is refused rather than folded.
    """
    if not (url.startswith("https://") or _loopback_http(url)):
        raise ValueError("one-click unsubscribe needs an https:// URL")
    targets = [url]
    if mailto:
        targets.append(mailto if mailto.startswith("mailto:") else f"mailto:{mailto}")
    if any(c in target for target in targets for c in "\r\n<>, "):
        raise ValueError("an unsubscribe URL holds no spaces, commas, angle brackets or newlines")
    value = ", ".join(f"<{target}>" for target in targets)
    if len("List-Unsubscribe: ") + len(value) > HEADER_LINE_MAX:
        raise ValueError(f"List-Unsubscribe would pass {HEADER_LINE_MAX} characters on one line")
    return {"List-Unsubscribe": value, "List-Unsubscribe-Post": ONE_CLICK}


def _loopback_http(url: str) -> bool:
    """Plain HTTP to this machine itself (the sandbox): nothing crosses a network."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes:
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the token is not base64url") from exc
    # The last character can carry bits the decoder ignores; only the one spelling
    # make() writes is accepted, so no two tokens stand for the same one.
    if _encode(data) != text:
        raise ValueError("the token is not base64url as written")
    return data
