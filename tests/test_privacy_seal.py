"""Sealing per data subject: AES-256-GCM under a data key, data keys wrapped by the KEK."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from ringbearer.privacy import Kek, Unsealable, new_data_key, open_sealed, rewrap, seal
from ringbearer.privacy._seal import NONCE_BYTES, VERSION

ANN = "ann@example.com"


@settings(max_examples=50, deadline=None)
@given(plaintext=st.binary(max_size=4096), purpose=st.text(min_size=1, max_size=20))
def test_what_is_sealed_opens_with_its_key_and_purpose(plaintext: bytes, purpose: str) -> None:
    key = new_data_key()
    sealed = seal(key, plaintext, purpose)
    if len(plaintext) >= 16:  # a shorter run may turn up in random bytes by chance
        assert plaintext not in sealed
    assert open_sealed(key, sealed, purpose) == plaintext


@settings(max_examples=50, deadline=None)
@given(plaintext=st.binary(min_size=1, max_size=256), data=st.data())
def test_any_changed_byte_is_refused(plaintext: bytes, data: st.DataObject) -> None:
    key = new_data_key()
    sealed = bytearray(seal(key, plaintext, "payload"))
    at = data.draw(st.integers(min_value=0, max_value=len(sealed) - 1))
    sealed[at] ^= data.draw(st.integers(min_value=1, max_value=255))
    with pytest.raises(Unsealable):
        open_sealed(key, bytes(sealed), "payload")


def test_another_key_or_purpose_does_not_open_it() -> None:
    key, other = new_data_key(), new_data_key()
    sealed = seal(key, b"Ann & Ben, 12 June", "payload")
    with pytest.raises(Unsealable):
        open_sealed(other, sealed, "payload")
    with pytest.raises(Unsealable):
        open_sealed(key, sealed, "dead_letter")
    with pytest.raises(Unsealable):
        open_sealed(key, sealed[:10], "payload")


def test_the_format_is_version_nonce_and_standard_aes_gcm() -> None:
    """Anyone with the key can open it with plain AES-GCM: nothing home-made in the cipher."""
    key = new_data_key()
    sealed = seal(key, b"hello", "payload")
    assert sealed[:1] == VERSION
    nonce, body = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
    assert AESGCM(key).decrypt(nonce, body, VERSION + b"payload") == b"hello"
    assert seal(key, b"hello", "payload") != sealed  # a fresh nonce every time


def test_a_wrapped_data_key_opens_only_for_its_subject_under_its_kek() -> None:
    kek, data_key = Kek.generate(), new_data_key()
    ann, ben = kek.subject_id(ANN), kek.subject_id("ben@example.com")
    wrapped = kek.wrap(ann, data_key)
    assert data_key not in wrapped
    assert kek.unwrap(ann, wrapped) == data_key
    with pytest.raises(Unsealable):
        kek.unwrap(ben, wrapped)  # moved to another subject: no
    with pytest.raises(Unsealable):
        Kek.generate().unwrap(ann, wrapped)


def test_rotation_rewraps_under_the_new_kek_and_the_old_one_is_no_longer_needed() -> None:
    old, new, data_key = Kek.generate(), Kek.generate(), new_data_key()
    subject = old.subject_id(ANN)
    rewrapped = rewrap(old, new, subject, old.wrap(subject, data_key))
    assert new.unwrap(subject, rewrapped) == data_key
    with pytest.raises(Unsealable):
        old.unwrap(subject, rewrapped)


def test_a_subject_id_is_stable_opaque_and_keyed() -> None:
    kek = Kek.generate()
    first = kek.subject_id(ANN)
    assert first == kek.subject_id(ANN) and first.startswith("s_")
    assert "ann" not in first and first != kek.subject_id("ben@example.com")
    assert Kek.generate().subject_id(ANN) != first  # without the KEK, no one can recompute it


def test_the_kek_never_shows_itself_and_must_be_256_bits() -> None:
    kek = Kek(bytes(range(32)))
    assert repr(kek) == "Kek(***)" and bytes(range(32)).hex() not in f"{kek!r} {kek}"
    with pytest.raises(ValueError, match="32 bytes"):
        Kek(b"short")


def test_a_kek_id_is_a_short_stable_public_fingerprint() -> None:
    """``Kek.id`` names a KEK the same way every time, differs between KEKs, and hides the key."""
    kek = Kek(bytes(range(32)))
    assert kek.id == Kek(bytes(range(32))).id != Kek.generate().id
    assert kek.id.startswith("k_") and len(kek.id) == 18
    assert all(c in "0123456789abcdef" for c in kek.id[2:]) and kek.id[2:] not in kek.key.hex()
