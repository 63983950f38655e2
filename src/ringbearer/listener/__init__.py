"""The public listener: provider webhooks, one-click unsubscribes, PagerDuty's acknowledgements,
and producers on other hosts submitting messages (``POST /v1/messages``).

It faces the internet behind the operator's TLS proxy, so it runs on a
maintained HTTP server (hypercorn's trio worker) serving a small plain ASGI
app. Every delivery is verified as its provider signs it and answered 2xx
only once what it reports is committed.
"""

from ._app import ListenerApp as ListenerApp
from ._app import ListenerParts as ListenerParts
from ._app import build_app as build_app
from ._intake import IntakeParts as IntakeParts
from ._intake import Producers as Producers
from ._intake import producers as producers
from ._pagerduty import Acknowledge as Acknowledge
from ._pagerduty import PagerDutyHook as PagerDutyHook
from ._serve import serve as serve
from ._signatures import Refused as Refused
from ._signatures import Verification as Verification
from ._signatures import Verified as Verified
from ._signatures import Why as Why
from ._unsubscribe_page import Unsubscriber as Unsubscriber
from ._webhooks import Ingest as Ingest
from ._webhooks import WebhookSource as WebhookSource

__all__ = [
    "Acknowledge",
    "Ingest",
    "IntakeParts",
    "ListenerApp",
    "ListenerParts",
    "PagerDutyHook",
    "Producers",
    "Refused",
    "Unsubscriber",
    "Verification",
    "Verified",
    "WebhookSource",
    "Why",
    "build_app",
    "producers",
    "serve",
]
