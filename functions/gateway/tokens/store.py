"""Load each tokenizer file once and count chat prompts and completions with it."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from gateway.errors import ConfigurationError
from gateway.settings import Settings
from gateway.tokens.hub import HubDownloadError, download_tokenizer
from gateway.tokens.template import ChatTemplate
from gateway.tokens.text import RawTextCounter

_SPECIAL_TOKEN_KEYS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)


def _token_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return str(value["content"])  # an AddedToken saved as a dict
    return None


def _pick_template(raw: Any) -> str | None:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list):  # [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in raw if isinstance(t, dict)}
        template = named.get("default")
        return template if isinstance(template, str) else None
    return None


class ChatTokenizer:
    """A loaded tokenizer.json with the chat template of its tokenizer_config.json."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        config_path = directory / "tokenizer_config.json"
        config: dict[str, Any] = {}
        if config_path.is_file():
            config = json.loads(config_path.read_text(encoding="utf-8"))
        special = {k: t for k in _SPECIAL_TOKEN_KEYS if (t := _token_text(config.get(k)))}
        source = _pick_template(config.get("chat_template"))
        jinja_path = directory / "chat_template.jinja"
        if source is None and jinja_path.is_file():
            source = jinja_path.read_text(encoding="utf-8")
        self._template = ChatTemplate(source, special) if source else None
        self._raw_text = RawTextCounter(self._tokenizer, config)

    @property
    def has_chat_template(self) -> bool:
        return self._template is not None

    def render_chat(
        self,
        messages: Sequence[dict[str, Any]],
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> str:
        if self._template is None:
            raise ConfigurationError(f"tokenizer at {self.directory} has no chat template")
        return self._template.render(messages, add_generation_prompt=True, tools=tools)

    def count_chat(
        self,
        messages: Sequence[dict[str, Any]],
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> int:
        """prompt_tokens as vLLM reports it: the rendered template (with the request's tool
        definitions, if any), no special tokens added."""
        return self.count_text(self.render_chat(messages, tools))

    def count_text(self, text: str) -> int:
        if not text:
            return 0
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def count_text_with_special(self, text: str) -> int:
        """A raw prompt as vLLM counts it for /v1/completions and /v1/embeddings: the
        tokenizer's special tokens added (BOS, or BERT's [CLS] ... [SEP])."""
        return self._raw_text.count(text)


class TokenizerStore:
    """Finds, downloads if need be, and loads tokenizers; one instance per distinct file."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._by_spec: dict[str, ChatTokenizer] = {}
        self._by_file: dict[Path, ChatTokenizer] = {}

    def get(self, spec: str) -> ChatTokenizer:
        """The tokenizer for a model entry's `tokenizer` (directory name or HF repo id)."""
        found = self._by_spec.get(spec)
        if found is not None:
            return found
        with self._lock:
            found = self._by_spec.get(spec)
            if found is None:
                directory = self._locate(spec)
                real = (directory / "tokenizer.json").resolve()
                found = self._by_file.get(real)
                if found is None:
                    found = ChatTokenizer(directory)
                    self._by_file[real] = found
                self._by_spec[spec] = found
            return found

    def loaded(self, spec: str) -> ChatTokenizer | None:
        """The tokenizer if it is already loaded (never loads or downloads)."""
        return self._by_spec.get(spec)

    @property
    def loaded_files(self) -> int:
        return len(self._by_file)

    def _locate(self, spec: str) -> Path:
        name = spec.replace("/", "--")
        candidates = []
        if self._settings.tokenizers_dir is not None:
            candidates.append(self._settings.tokenizers_dir / name)
        cached = self._settings.tokenizer_cache_dir / name
        candidates.append(cached)
        for directory in candidates:
            if (directory / "tokenizer.json").is_file():
                return directory
        token = self._settings.hf_token.get_secret_value() if self._settings.hf_token else None
        try:
            download_tokenizer(spec, dest=cached, endpoint=self._settings.hf_endpoint, token=token)
        except HubDownloadError as exc:
            raise ConfigurationError(f"tokenizer {spec!r} not found locally: {exc}") from exc
        return cached
