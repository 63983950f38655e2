"""Submit: check each message against its target, then hand the lot to the store's intake.

A malformed submit is all or nothing: one bad message refuses the request,
naming it (``messages[3]: ...``), and nothing of it is stored. A well-formed
message refused by policy (a suppressed recipient) is refused on its own: the
others of the request are stored, and the reply lists it under ``refused``.
The reply comes after the commit, so an accepted message is a durable one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import attrs

from .._converter import check_unix_time
from .._delivery import Priority
from .._errors import ErrorCode, InvalidPayload, RequestError
from .._fleet import Fleet
from .._metrics import Metrics
from .._reload import CurrentConfig
from ..control import MAX_MESSAGES_PER_SUBMIT, MessageIn, Submit
from ..control import _replies as r
from ..deliverability._intake import IntakeRules, Prepared, Refused
from ..growth._book import TemplateBook
from ..growth._staging import StageGate
from ..integrations._base import describe_char
from ..privacy._intake import PrivacyRefusal, Protection
from ..privacy._subjects import check_identities
from ..store import Accepted, AuditLog, Event, EventKind, Intake, NewMessage

MAX_KEY_LENGTH = 256
# An idempotency key travels in providers' headers (``Idempotency-Key``, an email's
# ``X-Idempotency-Key``) and ids, so it is what every header can carry as it is.
KEY_RULE = f"a key is 1 to {MAX_KEY_LENGTH} printable ASCII characters, '!' to '~', no spaces"
_KEY = re.compile(f"[!-~]{{1,{MAX_KEY_LENGTH}}}")
_NOT_IN_KEY = re.compile("[^!-~]")


@attrs.frozen
class SubmitHandler:
    current: CurrentConfig
    fleet: Fleet
    intake: Intake
    metrics: Metrics
    rules: IntakeRules
    keys: KeyHolders
    # A message that waits (``not_before``) is noted with its dispatcher, which
    # otherwise learns of due times only from settles.
    scheduled: Callable[[str, float], None] = lambda target, at: None
    # The privacy step (subjects, consent, sealing); None: stored as given.
    privacy: Protection | None = None
    # The templates a message may name, rendered here, once; None: none kept.
    templates: TemplateBook | None = None
    # The stage rules of a couple's planning (a message giving a wedding date).
    stages: StageGate | None = None
    audit: AuditLog | None = None  # where a stage hold is written (``stage_held``)
    # Growth: a message's experiment (its variant), an invite email (invite_sent).
    growth: GrowthHooks | None = None

    async def __call__(self, request: Submit) -> r.SubmitReply:
        messages = request.messages
        if not messages:
            raise RequestError(ErrorCode.BAD_ARGS, "submit needs at least one message")
        if len(messages) > MAX_MESSAGES_PER_SUBMIT:
            raise RequestError(
                ErrorCode.TOO_MANY, f"at most {MAX_MESSAGES_PER_SUBMIT} messages a request"
            )
        varied = [await self._varied(f"messages[{i}]", m) for i, m in enumerate(messages)]
        messages = [await self._rendered(f"messages[{i}]", m) for i, (m, _) in enumerate(varied)]
        staged = [self._staged(f"messages[{i}]", m) for i, m in enumerate(messages)]
        found = [self._check(f"messages[{i}]", m) for i, (m, _) in enumerate(staged)]
        checked = await self._protect([await self._unless_repeat(c) for c in found])
        refused = [
            r.RefusedMessage(i, c.code.value, c.reason)
            for i, c in enumerate(checked)
            if isinstance(c, Refused | PrivacyRefusal)
        ]
        kept = [(i, c) for i, c in enumerate(checked) if isinstance(c, NewMessage)]
        going = [(c, staged[i][1]) for i, c in kept]
        accepted = await self.intake.submit([c for c, _ in going]) if going else []
        if self.growth is not None and going:
            await self.growth.accepted(
                [(messages[i], varied[i][1], a) for (i, _), a in zip(kept, accepted, strict=True)]
            )
        return r.SubmitReply(
            [self._accepted(m, held, a) for (m, held), a in zip(going, accepted, strict=True)],
            refused,
        )

    def _accepted(self, message: NewMessage, held: str | None, a: Accepted) -> r.AcceptedMessage:
        """Tell of a message accepted: its dispatcher if it waits, the audit log if held."""
        if not a.duplicate:
            self.metrics.submitted_to(message.target)
            if message.not_before is not None:
                self.scheduled(message.target, message.not_before)
            if held is not None and self.audit is not None and self.stages is not None:
                detail = {"rule": held, "until": message.not_before}
                at = self.stages.wall()
                self.audit.append_event(Event(EventKind.STAGE_HELD.value, at, a.id, None, detail))
        return r.AcceptedMessage(a.id, a.idempotency_key, a.duplicate, held)

    def _staged(self, where: str, message: MessageIn) -> tuple[MessageIn, str | None]:
        """The message as the couple's planning stage allows it: held until a rule's window
        ends (a later ``not_before``, and why), or refused (RequestError naming the rule)."""
        if self.stages is None:
            return message, None
        category = self.rules.category(where, message.category)
        staged = self.stages.judge(where, message, category)
        if staged.held is None:
            return message, None
        return attrs.evolve(message, not_before=staged.not_before), staged.held

    async def _unless_repeat(self, checked: NewMessage | _Refusal) -> NewMessage | Refused:
        """A refused message whose key is already held is a producer's retry of a message
        accepted before its recipient was suppressed: the store answers it as that one."""
        if isinstance(checked, NewMessage):
            return checked
        message = checked.message
        key = message.idempotency_key if message is not None else None
        if message is not None and key is not None and await self.keys.holding_key(key):
            return message
        self.rules.refused(checked.refusal)
        return checked.refusal

    async def _varied(self, where: str, message: MessageIn) -> tuple[MessageIn, object]:
        """The message as its experiment's variant makes it, and what growth keeps of it."""
        if self.growth is None:
            if message.experiment is not None or message.invite is not None:
                raise RequestError(ErrorCode.BAD_ARGS, f"{where}: growth is not kept here")
            return message, None
        family = self.current.value.family_of(message.target)
        return await self.growth.vary(where, message, family)

    async def _rendered(self, where: str, message: MessageIn) -> MessageIn:
        """A message naming a template, with its rendered fields in its payload (rendered
        once, here: every retry and failover sends these very bytes)."""
        if message.template is None:
            if message.vars is not None or message.template_version is not None:
                raise RequestError(ErrorCode.BAD_ARGS, f"{where}: vars given without a template")
            return message
        if self.templates is None:
            raise RequestError(ErrorCode.BAD_ARGS, f"{where}.template: no templates are kept")
        try:
            rendered = await self.templates.render(
                message.template, message.template_version, message.vars or {}
            )
        except RequestError as exc:
            raise RequestError(exc.code, f"{where}: {exc.message}") from None
        fields = rendered.payload()
        both = sorted(set(fields) & set(message.payload))
        if both:
            raise RequestError(
                ErrorCode.BAD_ARGS,
                f"{where}.payload: {', '.join(both)} given and also rendered by the template",
            )
        wedding = message.wedding_date or (message.vars or {}).get("wedding_date")
        return attrs.evolve(
            message, payload={**message.payload, **fields}, template=None,
            template_version=None, vars=None,
            wedding_date=wedding if isinstance(wedding, str) else None,
        )  # fmt: skip

    async def _protect(
        self, checked: list[NewMessage | Refused]
    ) -> list[NewMessage | Refused | PrivacyRefusal]:
        """The privacy step, for the messages of the request not refused already."""
        if self.privacy is None:  # nothing sealed: no subject ids to name either
            return [attrs.evolve(c, subjects=()) if isinstance(c, NewMessage) else c
                    for c in checked]  # fmt: skip
        going = [
            (f"messages[{i}]", c, self.current.value.family_of(c.target))
            for i, c in enumerate(checked)
            if isinstance(c, NewMessage)
        ]
        protected = iter(await self.privacy.protect_all(going))
        return [next(protected) if isinstance(c, NewMessage) else c for c in checked]

    async def one(self, message: MessageIn) -> int:
        """Submit one message (an alert's); its id."""
        reply = await self(Submit([message]))
        if reply.refused:
            raise RequestError(ErrorCode(reply.refused[0].code), reply.refused[0].reason)
        (accepted,) = reply.accepted
        return accepted.id

    def _check(self, where: str, message: MessageIn) -> NewMessage | _Refusal:
        members = self.current.value.targets().get(message.target)
        if members is None:
            known = ", ".join(sorted(self.current.value.targets()))
            raise RequestError(
                ErrorCode.UNKNOWN_TARGET,
                f"{where}: unknown target {message.target!r}; known: {known}",
            )
        try:
            priority = Priority.parse(message.priority)
        except ValueError as exc:
            raise RequestError(ErrorCode.BAD_ARGS, f"{where}: {exc}") from None
        if message.key is not None:
            check_key(f"{where}.key", message.key)
        for name in ("deliver_by", "not_before"):
            _check_time(f"{where}.{name}", getattr(message, name))
        if message.subjects is not None:
            try:
                check_identities(f"{where}.subjects", message.subjects)
            except ValueError as exc:
                raise RequestError(ErrorCode.BAD_ARGS, str(exc)) from None
        category = self.rules.category(where, message.category)
        self._validate(where, members, message)
        prepared = self._prepare(where, members, message, category, priority)
        if isinstance(prepared, Refused):
            held = prepared.prepared
            stored = None if held is None else _new(message, priority, held)
            return _Refusal(prepared, stored)
        return _new(message, priority, prepared)

    def _prepare(
        self,
        where: str,
        members: tuple[str, ...],
        message: MessageIn,
        category: str,
        priority: Priority,
    ) -> Prepared | Refused:
        """Email goes through the deliverability rules; other work only keeps its category."""
        integrations = self.current.value.integrations
        if not any(integrations[m].family == "email" for m in members if m in integrations):
            return Prepared(message.payload, category, None, None)
        return self.rules.prepare(where, message.payload, category, priority)

    def _validate(self, where: str, members: tuple[str, ...], message: MessageIn) -> None:
        """Each running member's adapter checks the payload as its provider needs it."""
        for member in members:
            adapter = self.fleet.adapters.get(member)
            if adapter is not None:
                try:
                    adapter.validate(message.payload)
                except InvalidPayload as exc:
                    raise InvalidPayload(f"{where}: {exc.message}") from None


class GrowthHooks(Protocol):
    async def vary(self, where: str, message: MessageIn, family: str) -> tuple[MessageIn, Any]: ...

    async def accepted(self, items: Sequence[tuple[MessageIn, Any, Accepted]]) -> None: ...


class KeyHolders(Protocol):
    async def holding_key(self, key: str) -> int | None: ...


@attrs.frozen
class _Refusal:
    """A message refused on its own, and what it would have been stored as."""

    refusal: Refused
    message: NewMessage | None


def _new(message: MessageIn, priority: Priority, prepared: Prepared) -> NewMessage:
    return NewMessage(
        target=message.target,
        payload=prepared.payload,
        priority=priority,
        idempotency_key=message.key,
        deliver_by=message.deliver_by,
        category=prepared.category,
        recipient=prepared.recipient,
        domain=prepared.domain,
        not_before=message.not_before,
        # the producer's identities, until the privacy step names them by id
        subjects=tuple(check_identities("subjects", message.subjects)) if message.subjects else (),
    )


def _check_time(where: str, value: float | None) -> None:
    if value is None:
        return
    try:
        check_unix_time(value)
    except ValueError as exc:
        raise RequestError(ErrorCode.BAD_ARGS, f"{where}: {exc}") from None


def check_key(where: str, key: str) -> None:
    """Refuse an idempotency key outside ``KEY_RULE``, naming what is wrong with it."""
    if _KEY.fullmatch(key):
        return
    found = _NOT_IN_KEY.search(key)
    if found is None:  # only its length is wrong
        said = f"{len(key)} characters long"
    else:
        said = f"{describe_char(found[0])} (character {found.start() + 1}) not allowed"
    raise RequestError(ErrorCode.BAD_ARGS, f"{where}: {said}; {KEY_RULE}")
