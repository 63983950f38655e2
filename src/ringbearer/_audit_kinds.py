"""The kinds of audit events: the audit log's vocabulary, shared by the store that
writes it, the parts that report into it and the clients that filter it."""

from __future__ import annotations

import enum


class EventKind(enum.StrEnum):
    """Every kind of audit event; ``ringbearer audit --kind`` takes these."""

    # A message's life (written by the store, most by its triggers).
    SUBMITTED = "submitted"
    ATTEMPTED = "attempted"
    PROGRESSED = "progressed"  # a step of a multi-step delivery was done
    DELIVERED = "delivered"
    RETRIED = "retried"
    FAILED_OVER = "failed_over"
    DEAD_LETTERED = "dead_lettered"
    RETURNED = "returned"
    RECOVERED = "recovered"  # in flight at the last stop: queued again at start-up
    HELD = "held"  # kept in the store, not due, until its hold is released (a paused domain)
    RELEASED = "released"  # a hold ended: due again
    REPLAYED = "replayed"
    PURGED = "purged"
    # Integrations.
    BREAKER_CHANGED = "breaker_changed"
    BREAKER_COMMAND = "breaker_command"
    HEALTH_CHANGED = "health_changed"
    PAUSED = "paused"
    RESUMED = "resumed"
    CRASH_INJECTED = "crash_injected"
    ACTOR_CRASHED = "actor_crashed"
    ACTOR_RESTARTED = "actor_restarted"
    ACTOR_FAILED = "actor_failed"
    # The daemon.
    DAEMON_STARTED = "daemon_started"
    DAEMON_STOPPED = "daemon_stopped"
    RELOADED = "reloaded"
    RELOAD_REFUSED = "reload_refused"
    RELOAD_ROLLED_BACK = "reload_rolled_back"  # failed partway; the running set is back
    FORCED = "forced"  # a change made during the wedding-day freeze with --force
    CONTROL_REFUSED = "control_refused"
    PREFLIGHT = "preflight"
    # Wedding-day mode.
    WEDDING_DAY_ON = "wedding_day_on"
    WEDDING_DAY_OFF = "wedding_day_off"
    WEDDING_DAY_OVERRIDE = "wedding_day_override"
    # Alerts.
    ALERT_RAISED = "alert_raised"
    ALERT_SENT = "alert_sent"
    ALERT_CHANNEL_FAILED = "alert_channel_failed"
    ALERT_ESCALATED = "alert_escalated"
    ALERT_ACKED = "alert_acked"
    ALERT_RESOLVED = "alert_resolved"
    # Deliverability.
    PROVIDER_EVENT = "provider_event"  # a verified provider report on a message
    WEBHOOK_REFUSED = "webhook_refused"  # forged, stale or replayed: 401, nothing changed
    SUPPRESSED = "suppressed"  # an address added to the suppression list
    UNSUPPRESSED = "unsuppressed"  # removed from it
    REPUTATION_PAUSED = "reputation_paused"  # a sending domain's marketing and bulk mail waits
    REPUTATION_RESUMED = "reputation_resumed"
    # Privacy (subjects appear by their opaque ids only).
    ERASED = "erased"  # a message ended, or its payload wiped, by its subject's erasure
    ERASURE_REQUESTED = "erasure_requested"
    ERASURE_STEP = "erasure_step"  # one step of an erasure job done
    ERASURE_FINISHED = "erasure_finished"
    CONSENT = "consent"  # consent to a purpose given or withdrawn
    SHREDDED = "shredded"  # retention: payloads of old delivered or dead messages shredded
    KEYS_ROTATED = "keys_rotated"
    TOKEN_REFRESHED = "token_refreshed"
    TOKEN_REFRESH_FAILED = "token_refresh_failed"
    # Growth.
    TEMPLATE_PUT = "template_put"  # a template's new version kept
    STAGE_HELD = "stage_held"  # a message held by a stage rule until its window ends
    EXPERIMENT_CREATED = "experiment_created"  # an experiment's phase started
    EXPERIMENT_STOPPED = "experiment_stopped"  # ... and stopped, with why
    GROWTH_DECISION = "growth_decision"  # an opportunity rule's decision, naming the rule
