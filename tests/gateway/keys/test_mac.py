"""The MAC key format (gateway.keys.mac): only the holder of a MAC secret can mint a key the
gateway will look up; the secrets rotate without breaking the keys already issued."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import string

import pytest
from gateway.errors import ConfigurationError, DependencyError
from gateway.keys.mac import MAX_SECRETS, KeyMac, new_mac_secret, parse_secrets, secret_id
from gateway.keys.secret import (
    ALPHABET,
    MAC_LENGTH,
    MAC_PREFIX,
    MAC_RANDOM_LENGTH,
    TAG_LENGTH,
    base62,
    is_well_formed,
)
from gateway.settings import Settings
from pydantic import SecretStr

OLD, NEW, NEWER = (new_mac_secret() for _ in range(3))


def outsider_key(rng: random.Random, mac_secret: str | None = None) -> str:
    """A key as an outsider mints it: the documented layout, a tag made with a guessed
    secret (or random characters)."""
    body = MAC_PREFIX + "".join(rng.choices(ALPHABET, k=MAC_RANDOM_LENGTH))
    if mac_secret is None:
        return body + "".join(rng.choices(ALPHABET, k=TAG_LENGTH))
    digest = hmac.new(mac_secret.encode(), body.encode(), hashlib.sha256).digest()[:16]
    return body + base62(int.from_bytes(digest, "big"), width=TAG_LENGTH)


def test_minted_keys_follow_the_documented_layout() -> None:
    mac = KeyMac.of([NEW])
    for _ in range(200):
        key = mac.mint()
        assert len(key) == MAC_LENGTH == 72 and key.startswith("sk-gw3_")
        assert set(key[len(MAC_PREFIX) :]) <= set(string.ascii_letters + string.digits)
        assert is_well_formed(key)  # its shape, as the store checks it
        assert mac.signer_id(key) == secret_id(NEW)
    # The layout is as documented (HMAC-SHA256 of prefix + random part, first 128 bits,
    # base62): whoever holds the secret can mint, as the CLI does.
    assert mac.verify(outsider_key(random.Random(1), NEW))


def test_keys_minted_outside_never_verify() -> None:
    mac = KeyMac.of([NEW, OLD])
    rng = random.Random(7)
    random_tags = [outsider_key(rng) for _ in range(5000)]
    guessed_secret = [outsider_key(rng, new_mac_secret()) for _ in range(5000)]
    assert not any(mac.verify(k) for k in random_tags + guessed_secret)


def test_every_single_character_typo_is_refused() -> None:
    mac = KeyMac.of([NEW])
    key = mac.mint()
    for position in range(len(MAC_PREFIX), len(key)):
        for char in ALPHABET:
            if char != key[position]:
                assert not mac.verify(key[:position] + char + key[position + 1 :])
    assert not mac.verify(key[:-1]) and not mac.verify(key + "a")


def test_rotation_keeps_old_keys_until_their_secret_is_retired() -> None:
    before = KeyMac.of([OLD])
    issued = before.mint()
    # step 1: the new secret is added behind the old one (verifies, does not mint yet)
    staged = KeyMac.of([OLD, NEW])
    assert staged.verify(issued) and staged.signer_id(staged.mint()) == secret_id(OLD)
    # step 2: the new secret goes first and mints; keys of the old one keep working
    rotated = KeyMac.of([NEW, OLD])
    fresh = rotated.mint()
    assert rotated.signer_id(fresh) == secret_id(NEW) == rotated.newest_id
    assert rotated.signer_id(issued) == secret_id(OLD)
    assert staged.verify(fresh)  # an instance still on step 1 accepts the new keys
    # step 3: the old secret is retired: its keys stop, the new ones stay
    retired = KeyMac.of([NEWER, NEW])
    assert not retired.verify(issued)
    assert retired.verify(fresh)


@pytest.mark.parametrize(
    "text",
    [
        json.dumps([NEW, OLD]),
        f"{NEW}\n{OLD}\n",
        f"\n  {NEW}  \n\n{OLD}",
    ],
    ids=["json", "lines", "padded lines"],  # the secrets are random: stable ids
)
def test_the_parameter_holds_a_json_list_or_lines_newest_first(text: str) -> None:
    assert parse_secrets(text) == (NEW, OLD)
    assert KeyMac.parse(text).ids == (secret_id(NEW), secret_id(OLD))


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("[]", "empty"),
        ("[1, 2]", "list of strings"),
        ("[not json", "valid JSON"),
        ("short", "shorter than 32"),
        (json.dumps([NEW, NEW]), "twice"),
        ("\n".join(new_mac_secret() for _ in range(MAX_SECRETS + 1)), "at most"),
    ],
    # the secrets are random: stable ids (xdist collects the same tests in every worker)
    ids=["empty", "empty list", "not strings", "not json", "short", "twice", "too many"],
)
def test_bad_secret_lists_are_refused_without_quoting_them(text: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says) as raised:
        parse_secrets(text)
    assert NEW not in str(raised.value)


def test_from_settings_reads_the_env_or_the_ssm_parameter_once() -> None:
    reads: list[str] = []

    def read(name: str) -> str:
        reads.append(name)
        return f"{NEW}\n{OLD}"

    assert KeyMac.from_settings(Settings(), read_ssm_parameter=read) is None
    local = Settings(key_mac_secrets=SecretStr(json.dumps([OLD])))
    mac = KeyMac.from_settings(local, read_ssm_parameter=read)
    assert mac is not None and mac.ids == (secret_id(OLD),) and reads == []
    deployed = Settings(key_mac_secrets_parameter="/gw/key-mac")
    mac = KeyMac.from_settings(deployed, read_ssm_parameter=read)
    assert mac is not None and mac.ids == (secret_id(NEW), secret_id(OLD))
    assert reads == ["/gw/key-mac"]
    assert NEW not in repr(mac) and OLD not in repr(mac)


def test_an_unreadable_parameter_fails_the_start_clearly() -> None:
    def missing(name: str) -> str:
        raise DependencyError("SSM is unavailable (ParameterNotFound)")

    settings = Settings(key_mac_secrets_parameter="/gw/key-mac")
    with pytest.raises(ConfigurationError, match=r"/gw/key-mac.*ParameterNotFound"):
        KeyMac.from_settings(settings, read_ssm_parameter=missing)
    with pytest.raises(ConfigurationError, match=r"/gw/key-mac: .*shorter"):
        KeyMac.from_settings(settings, read_ssm_parameter=lambda name: "too-short")
