"""How each provider signs the events it sends, exactly as its documentation says.

* Resend (Svix, Standard Webhooks v1): ``v1,`` + base64 HMAC-SHA256, keyed by
  the base64 secret after ``whsec_``, over ``svix-id.svix-timestamp.body``.
* Mailgun: hex HMAC-SHA256, keyed by the webhook signing key, over the
  timestamp followed by the token.
* Twilio: base64 HMAC-SHA1, keyed by the auth token, over the URL called
  followed by each POST parameter's name and value, sorted by name.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping

SVIX_PREFIX = "whsec_"


def svix_key(secret: str) -> bytes:
    """The key of a ``whsec_...`` secret; ValueError when it is not one."""
    if not secret.startswith(SVIX_PREFIX):
        raise ValueError(f"a Svix secret starts with {SVIX_PREFIX!r}")
    try:
        key = base64.b64decode(secret.removeprefix(SVIX_PREFIX), validate=True)
    except binascii.Error as exc:
        raise ValueError("a Svix secret is base64 after its prefix") from exc
    if not key:
        raise ValueError("a Svix secret holds a key after its prefix")
    return key


def svix_signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``svix-signature`` header of one attempt (one ``v1,`` entry)."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def mailgun_signature(signing_key: str, timestamp: str, token: str) -> str:
    """``signature.signature`` of a Mailgun event."""
    content = (timestamp + token).encode()
    return hmac.new(signing_key.encode(), content, hashlib.sha256).hexdigest()


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """``X-Twilio-Signature`` of a form-encoded callback to ``url``."""
    content = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), content.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()
