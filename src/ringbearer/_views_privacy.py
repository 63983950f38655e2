"""What the privacy commands print: erasure jobs step by step, a subject's status, rotation.

Pure functions from typed replies to text, like ``_views``: no daemon, no
clock, no terminal. A subject is shown by its opaque id only, never by the
address it was asked by, so nothing here prints personal data.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ._views import plural, table, utc
from .control._replies import (
    ConsentView,
    ErasureStepView,
    ErasureView,
    KeysRotateReply,
    SubjectExportReply,
    SubjectStatusReply,
)

PENDING = "pending"
COMPLETED = "completed"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _detail(step: ErasureStepView) -> str:
    """A step's detail (counts, message ids, provider states) as ``k=v`` pairs."""
    return ", ".join(f"{key}={value}" for key, value in sorted(step.detail.items()))


def _step_row(step: ErasureStepView) -> tuple[str, str, str]:
    when = PENDING if step.done_at is None else f"done at {utc(step.done_at)}"
    return (f"  {step.step}", when, _detail(step))


def erasure_state(view: ErasureView) -> str:
    """``running``, or the outcome and when it finished."""
    if view.finished_at is None:
        return "running"
    return f"{view.outcome} at {utc(view.finished_at)}"


def format_erasure(view: ErasureView) -> str:
    """The job: its subject, who asked and when, where it stands, then each step."""
    head = (
        f"erasure {view.id} of {view.subject}: {erasure_state(view)}"
        f" (requested by {view.requested_by} at {utc(view.requested_at)})"
    )
    return "\n".join([head, *table([_step_row(s) for s in view.steps])])


def step_done(view: ErasureView, step: ErasureStepView) -> str:
    """One step as ``--wait`` reports it: ``erasure 3: destroy_key done``."""
    return f"erasure {view.id}: {step.step} done"


def newly_done(view: ErasureView, seen: Iterable[str]) -> list[ErasureStepView]:
    """The steps done in ``view`` that are not among those ``seen`` done before, in order."""
    known = set(seen)
    return [s for s in view.steps if s.done_at is not None and s.step not in known]


def format_finished(view: ErasureView) -> str:
    """The last line of ``--wait``: the job's outcome."""
    line = f"erasure {view.id}: {view.outcome}"
    if view.outcome != COMPLETED:
        line += " (the key is destroyed; an analytics provider's deletion was given up:"
        line += " see ringbearer dead-letters)"
    return line


def _consent(consent: dict[str, bool]) -> str:
    if not consent:
        return "none recorded"
    shown = (f"{p} {'granted' if g else 'withdrawn'}" for p, g in sorted(consent.items()))
    return ", ".join(shown)


def format_subject_status(reply: SubjectStatusReply) -> str:
    """Erased or not, key held or not, messages held, consent by purpose, then each job."""
    lines = [
        f"subject {reply.subject}",
        f"erased: {_yes(reply.erased)}",
        f"key held: {_yes(reply.has_key)}",
        f"messages held: {reply.messages}",
        f"consent: {_consent(reply.consent)}",
    ]
    if not reply.erasures:
        lines.append("no erasure requested")
    for job in reply.erasures:
        lines += ["", format_erasure(job)]
    return "\n".join(lines)


def format_consent(view: ConsentView) -> str:
    verb = "granted" if view.granted else "withdrawn"
    return (
        f"{view.subject}: {view.purpose} consent {verb} at {utc(view.at)}"
        f" (source {view.source}, by {view.by})"
    )


def format_exported(reply: SubjectExportReply, path: Path) -> str:
    """What an export written to a file holds (its content stays in the file)."""
    counts = ", ".join(
        [
            plural(len(reply.messages), "message"),
            plural(len(reply.events), "event"),
            plural(len(reply.mail_events), "mail event"),
            plural(len(reply.suppressions), "suppression"),
            plural(len(reply.consent), "consent record"),
        ]
    )
    return f"exported {reply.subject} to {path} (mode 0600, personal data): {counts}"


def format_rotation(reply: KeysRotateReply) -> str:
    """The new key's id, the data keys still under an older one, and whether it is needed."""
    state = "rewrapping" if reply.running else "done"
    lines = [
        f"key-encryption key: {reply.kek_id}",
        f"rewrap: {state}, {plural(reply.pending, 'data key')} still under an older key",
    ]
    if reply.old_needed:
        lines.append("the old key is still needed: keep it until the rewrap is done")
    else:
        lines.append("the old key is no longer needed")
    return "\n".join(lines)
