"""The formats of API-key secrets, newest first; each one lets the gateway refuse some keys
without reading the database.

- `sk-gw3_` (keys/mac.py): the random part is followed by a keyed MAC that only the
  gateway can make, so a key minted outside is refused for free. This module knows its
  shape only; KeyMac checks its tag.
- `sk-gw2_` (below): checksummed, so a random or mistyped key is refused for free, but
  anyone can compute the checksum: a well-formed outsider key costs a lookup.
- `sk-gw-` (legacy, below): shape only; each well-shaped one costs a lookup.

The checksummed secrets follow the scheme of GitHub's tokens (2021): a type prefix, random base62
characters, then a CRC32 checksum as 6 base62 characters, zero-padded:

    sk-gw2_ + 43 random base62 characters (256 bits) + 6 characters of CRC32

The CRC32 (zlib's, IEEE) covers the prefix and the random part. It is not a secret and
proves nothing about a key's validity; it only lets the gateway drop, for free, every
string that was not minted here: a random 56-character candidate passes with odds of
1 in 62**6 (about 5.7e10), and a one-character typo never does.

Legacy secrets (`sk-gw-` + `secrets.token_urlsafe(32)`, before checksums) stay valid. They
carry no checksum, so a well-shaped one still costs a lookup (negatively cached);
rotating a key gives it a checksummed secret.
"""

from __future__ import annotations

import re
import secrets
import zlib

MAC_PREFIX = "sk-gw3_"
MAC_RANDOM_LENGTH = 43  # 43 * log2(62) = 256.03 bits
TAG_BYTES = 16  # HMAC-SHA256 truncated to 128 bits
TAG_LENGTH = 22  # 62**22 > 2**128
MAC_LENGTH = len(MAC_PREFIX) + MAC_RANDOM_LENGTH + TAG_LENGTH
PREFIX = "sk-gw2_"
LEGACY_PREFIX = "sk-gw-"
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_LENGTH = 43  # 43 * log2(62) = 256.03 bits
CHECKSUM_LENGTH = 6  # 62**6 > 2**32
LENGTH = len(PREFIX) + RANDOM_LENGTH + CHECKSUM_LENGTH

_CHECKSUMMED = re.compile(
    rf"{re.escape(PREFIX)}[0-9A-Za-z]{{{RANDOM_LENGTH + CHECKSUM_LENGTH}}}", re.ASCII
)
_MAC_SHAPED = re.compile(
    rf"{re.escape(MAC_PREFIX)}[0-9A-Za-z]{{{MAC_RANDOM_LENGTH + TAG_LENGTH}}}", re.ASCII
)
# secrets.token_urlsafe(32): 32 bytes in unpadded URL-safe base64 are 43 characters.
_LEGACY = re.compile(rf"{re.escape(LEGACY_PREFIX)}[A-Za-z0-9_-]{{43}}", re.ASCII)


def base62(value: int, *, width: int) -> str:
    """`value` in base62 (ALPHABET), left-padded with "0" to `width` characters."""
    if not 0 <= value < 62**width:
        raise ValueError(f"{value} does not fit in {width} base62 digits")
    digits: list[str] = []
    for _ in range(width):
        value, digit = divmod(value, 62)
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits))


def checksum(body: str) -> str:
    """The 6-character checksum of a secret's prefix and random part."""
    return base62(zlib.crc32(body.encode("ascii")), width=CHECKSUM_LENGTH)


def new_secret() -> str:
    body = PREFIX + "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    return body + checksum(body)


def is_checksummed(secret: str) -> bool:
    """True for a secret in the checksummed format whose checksum matches."""
    if len(secret) != LENGTH or not _CHECKSUMMED.fullmatch(secret):
        return False
    body, check = secret[:-CHECKSUM_LENGTH], secret[-CHECKSUM_LENGTH:]
    # The checksum is derived from public text: no constant-time comparison needed.
    return checksum(body) == check


def has_mac_shape(secret: str) -> bool:
    """The MAC format's prefix, length and alphabet (says nothing of its tag: KeyMac)."""
    return len(secret) == MAC_LENGTH and _MAC_SHAPED.fullmatch(secret) is not None


def is_well_formed(secret: str) -> bool:
    """Whether a secret could have been issued by this gateway, by its form alone: a MAC
    secret's shape (its tag is KeyMac's to check), a checksummed secret with the right
    checksum, or a legacy secret of the right shape. Anything else needs no lookup to be
    refused."""
    if secret.startswith(MAC_PREFIX):
        return has_mac_shape(secret)
    if secret.startswith(PREFIX):
        return is_checksummed(secret)
    return _LEGACY.fullmatch(secret) is not None
