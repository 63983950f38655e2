"""``/unsubscribe/{token}``: RFC 8058 one-click unsubscribe, and the page a person sees.

A mailbox provider's one-click POST (body ``List-Unsubscribe=One-Click``,
urlencoded or multipart) suppresses at once and is answered 200 with a
small page, never a redirect: RFC 8058 forbids one, since a redirected POST
turns into a GET. Any body is accepted for a valid token; the token alone
says who leaves what.

A GET only shows a page with a button that POSTs to the same URL. Link
scanners and previews follow GETs, and must not unsubscribe anyone. No
script: the button is a plain form.
"""

from __future__ import annotations

import html
import logging
from typing import Protocol

import attrs

from .._logging import fields
from ..deliverability._unsubscribe import UnsubscribeTokens
from ._http import Request, Response
from ._refusals import Refusals
from ._signatures import Refused, Why

log = logging.getLogger("ringbearer.webhooks")

SOURCE = "unsubscribe"  # the refusals' source
BY = "one-click unsubscribe"


class Unsubscriber(Protocol):
    """Where an unsubscribe goes."""

    async def unsubscribe(self, address: str, category: str, *, by: str) -> None:
        """Suppress ``address`` for ``category``; return once that is committed."""
        ...


@attrs.frozen
class UnsubscribePages:
    """Answers GET (a confirmation page) and POST (unsubscribe now) for one token."""

    tokens: UnsubscribeTokens
    unsubscriber: Unsubscriber
    refusals: Refusals

    async def answer(self, token: str, request: Request) -> Response:
        try:
            address, category = self.tokens.read(token)
        except ValueError as exc:
            self.refusals.record(SOURCE, Refused(Why.BAD_TOKEN, str(exc)))
            return _page(400, "Link not recognised", _BAD_LINK)
        if request.method == "GET":
            return _confirmation(address, category)
        try:
            await self.unsubscriber.unsubscribe(address, category, by=BY)
        except Exception as exc:  # answered 503 so the mailbox provider tries again
            log.error("unsubscribe not recorded", extra=fields(error=type(exc).__name__))
            return _page(503, "Please try again", _TRY_AGAIN)
        return _page(200, "Unsubscribed", _done(address, category))


_BAD_LINK = "<p>This unsubscribe link is not one we sent, or it was cut short.</p>"
_TRY_AGAIN = "<p>We could not record your request just now. Please try again in a minute.</p>"


def _confirmation(address: str, category: str) -> Response:
    body = (
        f"<p>Stop {html.escape(category)} email to {html.escape(masked(address))}?</p>\n"
        # No action attribute: the form posts back to the very URL of this page,
        # whatever path prefix the operator's proxy serves it under.
        '<form method="post">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>'
    )
    return _page(200, "Unsubscribe", body)


def _done(address: str, category: str) -> str:
    return (
        f"<p>{html.escape(masked(address))} will get no more "
        f"{html.escape(category)} email from us.</p>"
    )


def _page(status: int, title: str, body: str) -> Response:
    return Response.page(status, title, f"<h1>{html.escape(title)}</h1>\n{body}")


def masked(address: str) -> str:
    """Enough of an address for its owner to know it, not enough to harvest it."""
    local, at, domain = address.partition("@")
    if not at:
        return f"…{address[-4:]}" if len(address) > 4 else "…"
    return f"{local[:1]}…@{domain}"
