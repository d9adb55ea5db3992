"""The secret format: checksummed new secrets, legacy secrets by shape, everything else refused."""

from __future__ import annotations

import binascii
import random
import secrets
import string

import pytest
from gateway.keys.secret import (
    ALPHABET,
    LEGACY_PREFIX,
    LENGTH,
    PREFIX,
    base62,
    is_checksummed,
    is_well_formed,
    new_secret,
)

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


def decode_base62(text: str) -> int:
    value = 0
    for char in text:
        value = value * 62 + BASE62.index(char)
    return value


def test_new_secrets_follow_the_documented_layout() -> None:
    minted = {new_secret() for _ in range(200)}
    assert len(minted) == 200
    for secret in minted:
        assert len(secret) == LENGTH == 56
        assert secret.startswith("sk-gw2_")
        body, check = secret[:-6], secret[-6:]
        assert set(body[len(PREFIX) :]) <= set(BASE62)
        # The last six characters are CRC32 (IEEE, as binascii computes it) of the rest,
        # in base62 with digits, upper case, then lower case.
        assert decode_base62(check) == binascii.crc32(body.encode())
        assert is_checksummed(secret) and is_well_formed(secret)


def test_base62_pads_and_bounds() -> None:
    assert ALPHABET == BASE62
    assert base62(0, width=6) == "000000"
    assert base62(61, width=6) == "00000z"
    assert base62(62, width=6) == "000010"
    assert base62(2**32 - 1, width=6) == "4gfFC3"
    assert decode_base62("4gfFC3") == 2**32 - 1
    with pytest.raises(ValueError):
        base62(62**6, width=6)


def test_every_single_character_typo_is_caught() -> None:
    secret = new_secret()
    for position in range(len(PREFIX), len(secret)):
        for char in BASE62:
            if char != secret[position]:
                typo = secret[:position] + char + secret[position + 1 :]
                assert not is_well_formed(typo), (position, char)


def test_random_candidates_with_the_prefix_fail_the_checksum() -> None:
    # Odds of a false pass: 1 in 62**6 per candidate, so 20,000 never pass (fixed seed).
    rng = random.Random(15)
    candidates = [PREFIX + "".join(rng.choices(BASE62, k=49)) for _ in range(20_000)]
    assert not any(is_well_formed(c) for c in candidates)


def test_legacy_secrets_stay_well_formed_by_shape() -> None:
    for _ in range(100):
        assert is_well_formed(LEGACY_PREFIX + secrets.token_urlsafe(32))
        assert not is_checksummed(LEGACY_PREFIX + secrets.token_urlsafe(32))


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "sk-gw2_",
        "sk-gw-",
        "sk-gw-nope",
        "sk-gw-" + "a" * 42,
        "sk-gw-" + "a" * 44,
        "sk-gw-" + "a" * 42 + "=",
        "sk-gw-" + "é" * 43,
        "sk-" + "a" * 53,
        "SK-GW2_" + "a" * 49,
        "sk-gw2_" + "a" * 48,
        "sk-gw2_" + "a" * 50,
        "sk-gw2_" + "a" * 48 + "-",
        "sk-gw2_" + "٣" * 49,  # Unicode digits are not base62
        "Bearer sk-gw2_",
        "x" * 10_000,
    ],
)
def test_malformed_secrets(secret: str) -> None:
    assert not is_well_formed(secret)
