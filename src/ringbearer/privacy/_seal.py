"""Sealing personal data under a key per data subject (AES-256-GCM, ``cryptography``).

The scheme is envelope encryption:

* a **key-encryption key** (KEK, 32 bytes) comes from a systemd credential,
  or in the sandbox from a generated key file of mode 0600; it never touches
  the database;
* each **data subject** (a couple, a guest, a vendor) has a **data key** of
  32 random bytes, kept in the store only *wrapped*: sealed with AES-256-GCM
  under the KEK, the subject's opaque id bound in as associated data, so a
  wrapped key moved to another subject does not open;
* personal data is sealed with AES-256-GCM under the subject's data key, a
  fresh 96-bit nonce each time, with a purpose (``payload``, ``dead_letter``)
  bound in as associated data.

Erasure destroys the data key: every sealed copy (the database, its WAL, a
backup) is then noise. A subject is named by an opaque id, a keyed hash
(HMAC-SHA256) of the normalised address, so the same person always gets the
same id and the id gives the address away to no one without the key. The
vault keys that hash with a pepper kept in the key store, so ids survive a
rotation of the KEK; a KEK is named by its public fingerprint, ``Kek.id``.
"""

from __future__ import annotations

import hashlib
import hmac
import os

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # GCM's 96-bit nonce
VERSION = b"\x01"  # the first byte of everything sealed: the format, for what comes later
_WRAP = b"ringbearer data key v1\n"
_SUBJECT = b"ringbearer subject id v1\n"
_KEK_ID = b"ringbearer kek id v1"


class Unsealable(Exception):
    """Sealed bytes that do not open: another key, another subject or purpose, or tampered."""


@attrs.frozen(repr=False)
class Kek:
    """The key-encryption key; ``repr`` never shows it."""

    key: bytes = attrs.field(alias="key")

    def __attrs_post_init__(self) -> None:
        if len(self.key) != KEY_BYTES:
            raise ValueError(f"a key-encryption key is {KEY_BYTES} bytes, not {len(self.key)}")

    def __repr__(self) -> str:
        return "Kek(***)"

    @classmethod
    def generate(cls) -> Kek:
        return cls(os.urandom(KEY_BYTES))

    @property
    def id(self) -> str:
        """A short public fingerprint naming this KEK (which one wrapped a key); never the key."""
        return "k_" + hmac.new(self.key, _KEK_ID, hashlib.sha256).hexdigest()[:16]

    def subject_id(self, normalised: str) -> str:
        """The opaque id of the subject named ``normalised`` (an address, a phone, a user id)."""
        key = hmac.new(self.key, _SUBJECT, hashlib.sha256).digest()
        return "s_" + hmac.new(key, normalised.encode(), hashlib.sha256).hexdigest()[:32]

    def wrap(self, subject: str, data_key: bytes) -> bytes:
        """``data_key`` sealed under this KEK, bound to ``subject``."""
        return _seal(self.key, data_key, _WRAP + subject.encode())

    def unwrap(self, subject: str, wrapped: bytes) -> bytes:
        """The data key of ``subject``; Unsealable if this KEK did not wrap it for them."""
        return _open(self.key, wrapped, _WRAP + subject.encode())


def new_data_key() -> bytes:
    return os.urandom(KEY_BYTES)


def seal(data_key: bytes, plaintext: bytes, purpose: str) -> bytes:
    """``plaintext`` sealed under ``data_key`` for ``purpose``: version, nonce, ciphertext."""
    return _seal(data_key, plaintext, purpose.encode())


def open_sealed(data_key: bytes, sealed: bytes, purpose: str) -> bytes:
    """The plaintext of ``sealed``; Unsealable if it was not sealed so, or was changed."""
    return _open(data_key, sealed, purpose.encode())


def rewrap(old: Kek, new: Kek, subject: str, wrapped: bytes) -> bytes:
    """A data key wrapped under ``old``, wrapped under ``new`` instead (key rotation)."""
    return new.wrap(subject, old.unwrap(subject, wrapped))


def _seal(key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return VERSION + nonce + AESGCM(key).encrypt(nonce, plaintext, VERSION + associated)


def _open(key: bytes, sealed: bytes, associated: bytes) -> bytes:
    if len(sealed) < 1 + NONCE_BYTES + 16 or sealed[:1] != VERSION:
        raise Unsealable("not sealed bytes of a known version")
    nonce, body = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
    try:
        return AESGCM(key).decrypt(nonce, body, VERSION + associated)
    except InvalidTag:
        raise Unsealable("does not open with this key for this subject and purpose") from None
