"""Load each tokenizer file once and count chat prompts and completions with it."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.errors import ConfigurationError
from gateway.settings import Settings
from gateway.tokens.bounds import LowerBound, template_cuts, template_trims
from gateway.tokens.chunking import CHUNK_CHARS, Splitter, count_in_pieces
from gateway.tokens.cuts import splitter_for
from gateway.tokens.hub import (
    REQUIRED_FILE,
    HubDownloadError,
    Progress,
    download_tokenizer,
    folder_name,
    human_size,
    split_repo,
)

if TYPE_CHECKING:
    from gateway.tokens.template import ChatTemplate


def _pick_template(raw: Any) -> str | None:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list):  # [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in raw if isinstance(t, dict)}
        template = named.get("default")
        return template if isinstance(template, str) else None
    return None


# leading_ids encodes at most this many characters per token asked for.
_MAX_CHARS_PER_TOKEN = 8


class ChatTokenizer:
    """A tokenizer.json with the chat template of its tokenizer_config.json, loaded with the
    rules transformers 5's AutoTokenizer applies (gateway.tokens.loading)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        config_path = directory / "tokenizer_config.json"
        config: dict[str, Any] = {}
        if config_path.is_file():
            config = json.loads(config_path.read_text(encoding="utf-8"))
        # The `tokenizers` library loads with the first tokenizer, not with the package:
        # a function that never counts (ApiFunction) never imports it.
        from tokenizers import Tokenizer

        from gateway.tokens.loading import SPECIAL_TOKEN_KEYS, build_backend, token_text

        raw = Tokenizer.from_file(str(directory / "tokenizer.json"))
        backend = build_backend(raw, config)
        self._tokenizer = backend.tokenizer
        post = self._tokenizer.post_processor
        self._special_added = post.num_special_tokens_to_add(False) if post is not None else 0
        self.tokenizer_class = backend.tokenizer_class
        self.loading_rule = backend.rule
        special = {k: t for k in SPECIAL_TOKEN_KEYS if (t := token_text(config.get(k)))}
        # transformers 5: a chat_template.jinja file wins over the config's template
        jinja_path = directory / "chat_template.jinja"
        if jinja_path.is_file():
            source: str | None = jinja_path.read_text(encoding="utf-8")
        else:
            source = _pick_template(config.get("chat_template"))
        self._template: ChatTemplate | None = None
        # whether the template may strip its contents' ends (the chat lower bound's texts)
        self._template_trims = bool(source) and template_trims(source or "")
        # whether it copies every content whole (or trimmed): then assistant turns too
        self.copies_contents_whole = bool(source) and not template_cuts(source or "")
        if source:
            # jinja2 is imported with the first template, not with the package.
            from gateway.tokens.template import ChatTemplate

            self._template = ChatTemplate(source, special)

    @functools.cached_property
    def _splitter(self) -> Splitter | None:
        """Long texts are counted in pieces (gateway.tokens.chunking), when a safe cut is
        known; built with the first long text (a twin build in two threads is harmless)."""
        return splitter_for(self._tokenizer)

    @functools.cached_property
    def _lower_bound(self) -> LowerBound:
        return LowerBound.of(self._tokenizer)

    @property
    def has_chat_template(self) -> bool:
        return self._template is not None

    def render_chat(
        self,
        messages: Sequence[dict[str, Any]],
        tools: Sequence[dict[str, Any]] | None = None,
        *,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> str:
        if self._template is None:
            raise ConfigurationError(f"tokenizer at {self.directory} has no chat template")
        return self._template.render(
            messages, add_generation_prompt=True, tools=tools, template_kwargs=template_kwargs
        )

    def count_chat(
        self,
        messages: Sequence[dict[str, Any]],
        tools: Sequence[dict[str, Any]] | None = None,
        *,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> int:
        """prompt_tokens as vLLM reports it: the rendered template (with the request's tool
        definitions and chat_template_kwargs, if any), no special tokens added."""
        return self.count_text(self.render_chat(messages, tools, template_kwargs=template_kwargs))

    def lower_bound(self, texts: Iterable[str]) -> int:
        """At most the tokens of these chat contents, without tokenizing them: cheap (a few
        `str.count` over each text) and small (no copy, but of a text that starts or ends
        with whitespace, when the template may trim it). Sound for `count_text` of each
        text, and for `count_chat` of a conversation when the texts are contents its
        template copies whole or trimmed (system, user and tool contents in the families
        here; not assistant contents, which Qwen3's template cuts at `</think>`). Whitespace
        at a text's ends is weighed unless the template may trim it. docs/TOKENS.md, "A
        lower bound"."""
        return self._lower_bound.tokens(texts, trimmed=self._template_trims)

    def each_lower_bound(self, texts: Sequence[str], *, over_chars: int) -> list[int]:
        """Each plain text's lower bound (no template: whitespace at its ends is weighed;
        sound for `count_text` and `count_text_with_special`) when the texts together are
        longer than `over_chars`, else [] (small texts are counted at once, at no risk to
        memory)."""
        if sum(map(len, texts)) <= over_chars:
            return []
        return [self._lower_bound.tokens([text], trimmed=False) for text in texts]

    def count_text(self, text: str) -> int:
        """Tokens of a text with no special tokens added (a completion, a rendered prompt)."""
        if not text:
            return 0
        return self._count(text, add_special_tokens=False)

    def count_text_with_special(self, text: str) -> int:
        """Tokens of a plain-text prompt as /v1/completions and /v1/embeddings count it:
        `tokenizer(text, add_special_tokens=True)`, so BOS/EOS of the post-processor count."""
        return self._count(text, add_special_tokens=True)

    def leading_ids(self, text: str, *, tokens: int) -> list[int]:
        """The first `tokens` token ids of `text` (no special tokens added), as its full
        encoding starts (but the last few, where the cut text ends), encoding no more of
        it than they can span: a prefix key (backends/affinity.py) costs a short encode,
        not a second count of the whole prompt."""
        head = text[: tokens * _MAX_CHARS_PER_TOKEN]
        if not head:
            return []
        encoding = self._tokenizer.encode_batch_fast([head], add_special_tokens=False)[0]
        encoding.truncate(tokens)
        return list(encoding.ids)

    def _count(self, text: str, *, add_special_tokens: bool) -> int:
        splitter = self._splitter if len(text) > CHUNK_CHARS else None
        if splitter is not None:
            # peak memory bounded by the piece size, not the text's (docs/TOKENS.md)
            counted = count_in_pieces(self._tokenizer, splitter, text)
            return counted + (self._special_added if add_special_tokens else 0)
        # Not `encode`: it holds the GIL for the whole count (20 s for 10 MB here), so a
        # count in a worker thread still stalled the event loop. `encode_batch_fast`
        # releases it, skips the character offsets a count does not need (2x faster), and
        # gives the same ids. len() of the Encoding builds no list of 10 million ints.
        batch = self._tokenizer.encode_batch_fast([text], add_special_tokens=add_special_tokens)
        return len(batch[0])


class TokenizerStore:
    """Finds, downloads if need be, and loads tokenizers; one instance per distinct file."""

    def __init__(self, settings: Settings, *, progress: Progress | None = None) -> None:
        self._settings = settings
        self._progress = progress
        self._lock = threading.Lock()
        self._by_spec: dict[str, ChatTokenizer] = {}
        self._by_file: dict[Path, ChatTokenizer] = {}
        self._sources: dict[str, str] = {}

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

    def source(self, spec: str) -> str | None:
        """Where a loaded tokenizer's files came from (a folder, the cache, or the Hub)."""
        return self._sources.get(spec)

    def loaded(self, spec: str) -> ChatTokenizer | None:
        """The tokenizer if it is already loaded (never loads or downloads)."""
        return self._by_spec.get(spec)

    @property
    def loaded_files(self) -> int:
        return len(self._by_file)

    def _locate(self, spec: str) -> Path:
        name = folder_name(spec)
        cached = self._settings.tokenizer_cache_dir / name
        if self._settings.tokenizers_dir is not None:
            folder = self._settings.tokenizers_dir / name
            if (folder / REQUIRED_FILE).is_file():
                self._sources[spec] = f"folder {folder}"
                return folder
        repo, revision = split_repo(spec)
        if (cached / REQUIRED_FILE).is_file():
            self._sources[spec] = f"cache {cached} (Hub {repo}@{revision})"
            return cached
        token = self._settings.hf_token.get_secret_value() if self._settings.hf_token else None
        endpoint = self._settings.hf_endpoint
        try:
            size = download_tokenizer(
                spec, dest=cached, endpoint=endpoint, token=token, progress=self._progress
            )
        except HubDownloadError as exc:
            raise ConfigurationError(f"tokenizer {spec!r} not found locally: {exc}") from exc
        self._sources[spec] = (
            f"Hub {endpoint.rstrip('/')}/{repo}@{revision}, {human_size(size)} into {cached}"
        )
        return cached
