"""Loading the key-encryption key: a systemd credential, or the sandbox's key file.

In production the KEK comes from a secret reference, usually a systemd
credential (``{ credential = "ringbearer-kek" }``), whose text is the key as
64 hexadecimal characters or as base64 of 32 bytes. In the sandbox there is
no credential: the KEK is a key file of mode 0600, generated on first start.

Every error is a :class:`KekError` naming where the key was looked for and
what is wrong with it, never the key's text, right or wrong.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import stat
from pathlib import Path

from .._errors import RingbearerError
from .._secrets import SecretRef
from ._seal import KEY_BYTES, Kek

_HEX = re.compile(f"[0-9a-fA-F]{{{2 * KEY_BYTES}}}")
_PRIVATE = 0o600
_KEY_FILE_MAX = 4096  # far more than a key's text: a larger file is not a key file


class KekError(RingbearerError):
    """The key-encryption key is missing, malformed, or kept where others may read it."""


def load_kek(ref: SecretRef | None, key_file: Path) -> Kek:
    """The KEK named by ``ref``; without a reference, the sandbox key file (created if absent)."""
    if ref is not None:
        return _from_reference(ref)
    if not key_file.exists():
        _write_new(key_file, Kek.generate(), exist_ok=True)
    return _read_key_file(key_file)


def generate_key_file(path: Path) -> Kek:
    """A new KEK written to ``path`` (which must not exist) atomically, with mode 0600."""
    kek = Kek.generate()
    _write_new(path, kek, exist_ok=False)
    return kek


def parse_key(text: str) -> bytes | None:
    """The 32 key bytes that ``text`` spells (64 hex characters or base64), or None."""
    text = text.strip()
    if _HEX.fullmatch(text):
        return bytes.fromhex(text)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == KEY_BYTES else None


def _from_reference(ref: SecretRef) -> Kek:
    secret = ref.resolve()
    if secret is None:
        raise KekError(f"key-encryption key: {ref.describe()} is not set or not readable")
    key = parse_key(secret.reveal())
    if key is None:
        raise KekError(
            f"key-encryption key: {ref.describe()} is not 64 hexadecimal characters "
            f"nor base64 of {KEY_BYTES} bytes"
        )
    return Kek(key)


def _read_key_file(path: Path) -> Kek:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise KekError(f"key file {path}: cannot open it: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as file:
        mode = stat.S_IMODE(os.fstat(file.fileno()).st_mode)
        if mode & 0o077:
            raise KekError(
                f"key file {path}: mode {mode:04o} lets group or others at it; "
                f"it must be 0600 (chmod 600)"
            )
        raw = file.read(_KEY_FILE_MAX + 1)
    key = None if len(raw) > _KEY_FILE_MAX else parse_key(raw.decode("ascii", "replace"))
    if key is None:
        raise KekError(f"key file {path}: not a key (64 hexadecimal characters expected)")
    return Kek(key)


def _write_new(path: Path, kek: Kek, *, exist_ok: bool) -> None:
    """Write ``kek`` to ``path`` whole or not at all: a temporary file, then a link.

    A link never replaces a file, so an existing key (which may be all that
    opens the data) is never overwritten, and a crash leaves no half-written
    key file behind.
    """
    temporary = path.with_name(f".{path.name}.{os.urandom(6).hex()}.new")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE)
        with os.fdopen(fd, "wb") as file:
            file.write(kek.key.hex().encode() + b"\n")
            file.flush()
            os.fsync(file.fileno())
        os.link(temporary, path)
        _sync_folder(path.parent)
    except FileExistsError:
        if not exist_ok or not path.exists():
            raise KekError(
                f"key file {path}: already exists; a key file is never replaced"
            ) from None
    except OSError as exc:
        raise KekError(f"key file {path}: cannot write it: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
