"""What deliverability does to an email at submit: its category, who and where from,
the suppression list, and the one-click unsubscribe headers.

Done once, at submit, and stored as done: every retry and failover sends the
same headers, and a suppressed recipient is refused before anything is queued
(the other messages of the same request still go in). Work queued before a
suppression is caught again before it is sent (the gate).
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import attrs

from .._delivery import Priority
from .._errors import ErrorCode, RequestError
from ._model import Suppression, normalise_address
from ._settings import DeliverabilitySettings

_UNSUBSCRIBE_HEADERS = frozenset({"list-unsubscribe", "list-unsubscribe-post"})


class Book(Protocol):
    def blocking(
        self, address: str, category: str, priority: Priority, now: float
    ) -> Suppression | None: ...


class Tokens(Protocol):
    def make(self, address: str, category: str) -> str: ...


class SuppressedCount(Protocol):
    def suppressed(self, reason: str) -> None: ...


@attrs.frozen
class Prepared:
    """An email as it will be stored: its payload (headers added) and what the guards read."""

    payload: dict[str, Any]
    category: str
    recipient: str | None
    domain: str | None


@attrs.frozen
class Refused:
    """One message refused on its own; the rest of its request goes on.

    ``prepared`` is the message as it would have been stored: a producer's
    retry of a message accepted before its recipient was suppressed is the
    earlier message (a duplicate), not a refusal, and is compared as stored.
    """

    code: ErrorCode
    reason: str
    counted_as: str  # the ``ringbearer_suppressed_total`` reason, once it is refused
    prepared: Prepared | None = None


@attrs.frozen
class IntakeRules:
    """Checks and completes each message at submit, as ``[deliverability]`` says."""

    settings: DeliverabilitySettings
    book: Book
    tokens: Tokens
    unsubscribe_base: Callable[[], str | None]  # the listener's public URL, once known
    wall: Callable[[], float]
    metrics: SuppressedCount
    headers_for: Callable[[str, str], dict[str, str]]  # (url, mailto) -> the RFC 8058 pair
    # An address as the book, the store and unsubscribe links name it: with the
    # privacy vault, its subject id (a keyed hash); without, itself.
    pseudonym: Callable[[str], str] = normalise_address

    def category(self, where: str, asked: str | None) -> str:
        category = asked if asked is not None else self.settings.default_category
        if category not in self.settings.categories:
            known = ", ".join(self.settings.categories)
            raise RequestError(
                ErrorCode.BAD_ARGS, f"{where}.category: unknown {category!r}; known: {known}"
            )
        return category

    def prepare(
        self, where: str, payload: dict[str, Any], category: str, priority: Priority
    ) -> Prepared | Refused:
        """An email (its payload already checked by its adapters): refused, or ready."""
        recipients = [self.pseudonym(normalise_address(a)) for a in _addresses(payload)]
        domain = _domain(payload.get("from"))
        if category in self.settings.unsubscribe.categories and len(recipients) != 1:
            raise RequestError(
                ErrorCode.BAD_ARGS,
                f"{where}: a {category} email goes to exactly one recipient"
                f" (its unsubscribe link names them); it has {len(recipients)}",
            )
        if category in self.settings.unsubscribe.categories:
            payload = self._with_unsubscribe(payload, recipients[0], category)
        prepared = Prepared(payload, category, recipients[0] if recipients else None, domain)
        now = self.wall()
        for index, address in enumerate(recipients):
            found = self.book.blocking(address, category, priority, now)
            if found is not None:
                why = _why(where, index, category, found)
                return Refused(ErrorCode.SUPPRESSED, why, found.reason.value, prepared)
        return prepared

    def refused(self, refusal: Refused) -> None:
        """Count a refusal the submit keeps (not one that turned out to be a repeat)."""
        self.metrics.suppressed(refusal.counted_as)

    def _with_unsubscribe(
        self, payload: dict[str, Any], address: str, category: str
    ) -> dict[str, Any]:
        base = self.unsubscribe_base()
        mailto = self.settings.unsubscribe.mailto
        if base is None and not mailto:
            return payload  # no way to unsubscribe is configured (the start-up log says so)
        headers = {
            name: value
            for name, value in (payload.get("headers") or {}).items()
            if name.lower() not in _UNSUBSCRIBE_HEADERS
        }
        if base is None:  # mailto alone: no one-click (RFC 8058 needs an HTTPS URI)
            headers["List-Unsubscribe"] = f"<mailto:{mailto}>"
        else:
            url = f"{base.rstrip('/')}/unsubscribe/{self.tokens.make(address, category)}"
            headers.update(self.headers_for(url, mailto))
        return {**payload, "headers": headers}


def _addresses(payload: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    for key in ("to", "cc", "bcc"):
        value = payload.get(key)
        items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        found += [email.utils.parseaddr(item)[1] for item in items if isinstance(item, str)]
    return found


def _domain(sender: object) -> str | None:
    if not isinstance(sender, str):
        return None
    _, address = email.utils.parseaddr(sender)
    return address.rpartition("@")[2].lower() or None


def _why(where: str, index: int, category: str, found: Suppression) -> str:
    scope = "every category" if found.scope == "*" else f"category {found.scope}"
    return (
        f"{where}: recipient {index} is suppressed for {category} mail"
        f" ({found.reason.value}, {scope}); see `ringbearer suppression check`"
    )
