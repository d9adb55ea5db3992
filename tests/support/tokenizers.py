"""Where the tests find real tokenizer files, family by family.

A family (a folder name of ../shared/tokenizers, and a key of the token tests' reference
counts) is read from `<shared>/tokenizers/<family>` (`<shared>`: ../shared beside the
checkout, or GATEWAY_SHARED_DIR). Where it is not there, the same model's tokenizer that
`make run` downloaded is used: `devstack.tokenizers.default_cache` (TOKENIZER_CACHE_DIR,
else ~/.cache/gpu-gateway/tokenizers), in the folder named after its Hub repository
(`Qwen--Qwen3-0.6B`). The tests see one folder with every family found under its family
name (`Located.folder`), and the token tests skip, each with the reason, the families
found nowhere (`Located.params`, `Located.require`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from devstack.tokenizers import HUB_MODELS, default_cache
from gateway.tokens.hub import folder_name, split_repo

# Models the tests' gateway serves: public id -> tokenizer folder in ../shared/tokenizers.
# The ids are `make run`'s (devstack.tokenizers.HUB_MODELS), which names the Hub repository
# it downloads each one from.
TEST_MODELS = {
    "qwen3": "qwen3",
    "llama3": "llama-3-8b-instruct",
    "mistral": "mistral-7b-instruct-v0.1",
    "tinyllama": "tinyllama-1.1b-chat-v1.0",
}
# Every family the tests use; gpt2 (no chat template) is not one `make run` downloads.
FAMILIES = (*TEST_MODELS.values(), "gpt2")
CHAT_FAMILIES = tuple(TEST_MODELS.values())
REQUIRED = ("tokenizer.json", "tokenizer_config.json")
README = "README.md, 'Tokenizer files for make test'"


def _present(folder: Path) -> bool:
    return all((folder / name).is_file() for name in REQUIRED)


@dataclass(frozen=True)
class Located:
    """The families found (family -> its folder) and where they were looked for."""

    shared: Path  # <shared>/tokenizers
    cache: Path  # make run's download cache
    found: dict[str, Path]

    @property
    def complete(self) -> bool:
        return all(family in self.found for family in FAMILIES)

    def from_shared(self, family: str) -> bool:
        return self.found.get(family) == self.shared / family

    def missing(self, family: str) -> str:
        """Why `family` is absent, and how to provide it."""
        where = f"not in {self.shared}/{family}"
        model = _hub_model(family)
        if model is None:
            return (
                f"{where}, and `make run` does not download {family}: provide "
                f"GATEWAY_SHARED_DIR=<folder with tokenizers/{family}/tokenizer.json "
                f"and tokenizer_config.json> ({README})"
            )
        repo, _ = split_repo(model.repo)
        gated = " with HF_TOKEN set (gated on the Hub)" if model.gated else ""
        return (
            f"{where} nor in {self.cache / folder_name(model.repo)}: run `make run` once"
            f"{gated} to download {repo}, or provide GATEWAY_SHARED_DIR ({README})"
        )

    def how_to_provide(self) -> str | None:
        """The one message a run without every family prints first (None: all found)."""
        absent = [family for family in FAMILIES if family not in self.found]
        if not absent:
            return None
        found = ", ".join(f"{f} ({p.parent})" for f, p in self.found.items()) or "none"
        return (
            f"tokenizer files missing for {', '.join(absent)}: the tests that need them skip "
            f"(found: {found}). Token tests use what `make run` downloaded into {self.cache} "
            "(qwen3, tinyllama; llama3 and mistral with HF_TOKEN); for all of them provide "
            "GATEWAY_SHARED_DIR=/path/to/shared, a folder with tokenizers/<name>/"
            f"tokenizer.json (+ tokenizer_config.json) for {', '.join(FAMILIES)} "
            f"(default: {self.shared.parent}; {README})"
        )

    def folder(self, scratch: Path) -> Path:
        """One folder with every family found under its family name: the shared folder
        itself when it has them all, else links made in `scratch`."""
        if all(self.from_shared(family) for family in self.found) and self.found:
            return self.shared
        scratch.mkdir(parents=True, exist_ok=True)
        for family, source in self.found.items():
            link = scratch / family
            if not link.exists():
                link.symlink_to(source, target_is_directory=True)
        return scratch

    def marks(self, family: str) -> Any:
        """A parameter's marks: a skip with the reason where `family` is absent."""
        return () if family in self.found else pytest.mark.skip(reason=self.missing(family))

    def params(self, families: Iterable[str]) -> list[Any]:
        """`families` for parametrize: each one absent skipped with its reason."""
        return [pytest.param(family, marks=self.marks(family)) for family in families]

    def require(self, *families: str) -> None:
        """Skip the calling test unless every one of `families` is found."""
        for family in families:
            if family not in self.found:
                pytest.skip(self.missing(family))


def _hub_model(family: str) -> Any:
    ids = {folder: public for public, folder in TEST_MODELS.items()}
    return next((m for m in HUB_MODELS if m.id == ids.get(family)), None)


def locate(*, shared: Path, env: Mapping[str, str]) -> Located:
    """Each family from `shared` (the tokenizers folder), else from make run's cache."""
    cache = default_cache(env)
    found: dict[str, Path] = {}
    for family in FAMILIES:
        model = _hub_model(family)
        candidates = [shared / family]
        if model is not None:
            candidates.append(cache / folder_name(model.repo))
        folder = next((c for c in candidates if _present(c)), None)
        if folder is not None:
            found[family] = folder
    return Located(shared=shared, cache=cache, found=found)


def shared_root(checkout: Path, env: Mapping[str, str] = os.environ) -> Path:
    """../shared beside the checkout, or GATEWAY_SHARED_DIR."""
    return Path(env.get("GATEWAY_SHARED_DIR", checkout.parent / "shared"))
