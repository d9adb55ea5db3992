"""Per-model tokenizer, chat template and cached completion scripts.

Prompt tokens are counted the way vLLM counts them: ``AutoTokenizer.from_pretrained(folder)``
and its ``apply_chat_template(messages, add_generation_prompt=True, tokenize=True)``, which renders
the template and tokenizes the result without adding special tokens (the template writes
BOS itself). This is deliberately independent of the gateway's own renderer.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from gpusim.text import completion_text

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

NO_TEMPLATE_MESSAGE = (
    "As of transformers v4.44, default chat template is no longer allowed, so you must "
    "provide a chat template if the tokenizer does not define one."
)
_PROMPT_CACHE_SIZE = 1024
_SCRIPT_CACHE_SIZE = 256
_INITIAL_COPIES = 2
MAX_SCRIPT_TOKENS = 200_000


class TemplateRenderError(Exception):
    """The request cannot be rendered with the model's chat template (an HTTP 400)."""


@dataclass(frozen=True)
class Script:
    """A deterministic completion: token ids and, per token, the text that token adds when
    decoded incrementally (empty while the text ends in an incomplete UTF-8 character)."""

    ids: tuple[int, ...]
    deltas: tuple[str, ...]


# transformers' lazy module is not safe to import from several threads at once: a thread
# can find `AutoTokenizer` missing while another is importing it ("cannot import name
# 'AutoTokenizer'", a 500 on the first concurrent /v1/embeddings requests). Every load in
# this process goes through load_tokenizer, one at a time.
_LOADING = threading.Lock()


def load_tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    """The tokenizer exactly as vLLM loads it: transformers' AutoTokenizer on the folder.

    transformers picks the class named in tokenizer_config.json and, for classes such as
    LlamaTokenizer, rebuilds the backend from the config (``legacy``, ``add_prefix_space``),
    so this is not the same as reading tokenizer.json with ``tokenizers``."""
    with _LOADING:
        from transformers import AutoTokenizer  # heavy import, done on first use

        return AutoTokenizer.from_pretrained(str(folder))


def _as_id_list(result: Any) -> list[int]:
    # transformers 5 returns a BatchEncoding from apply_chat_template(tokenize=True) unless
    # return_dict=False; accept either shape.
    if isinstance(result, Mapping):
        result = result["input_ids"]
    if result and isinstance(result[0], list):
        result = result[0]
    return [int(i) for i in result]


def _vllm_message(message: Any) -> Any:
    """Normalize one message as vLLM does before templating: a list of text parts becomes
    the texts joined with a newline; tool-call arguments given as JSON text become objects."""
    if not isinstance(message, Mapping):
        raise TemplateRenderError("each message must be an object")
    out = dict(message)
    content = out.get("content")
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping) and part.get("type") == "text":
                texts.append(str(part.get("text", "")))
            else:
                kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                raise TemplateRenderError(f"content part of type {kind!r} is not supported")
        out["content"] = "\n".join(texts)
    tool_calls = out.get("tool_calls")
    if isinstance(tool_calls, list):
        out["tool_calls"] = [_parse_arguments(call) for call in tool_calls]
    return out


def _parse_arguments(call: Any) -> Any:
    function = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(function, Mapping) or not isinstance(function.get("arguments"), str):
        return call
    try:
        arguments = orjson.loads(function["arguments"])
    except orjson.JSONDecodeError:
        return call
    return {**call, "function": {**function, "arguments": arguments}}


class SimModel:
    """One served model: its tokenizer (loaded once, lazily) and bounded caches."""

    def __init__(self, name: str, folder: Path) -> None:
        self.name = name
        self.folder = folder
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._lock = threading.Lock()
        self._prompts: OrderedDict[bytes, tuple[int, ...]] = OrderedDict()
        self._scripts: OrderedDict[tuple[int, int], Script] = OrderedDict()

    @property
    def loaded(self) -> bool:
        return self._tokenizer is not None

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        tokenizer = self._tokenizer
        if tokenizer is None:
            with self._lock:
                if self._tokenizer is None:
                    self._tokenizer = load_tokenizer(self.folder)
                tokenizer = self._tokenizer
        return tokenizer

    async def ensure_loaded(self) -> None:
        """Load the tokenizer in a worker thread so the event loop keeps serving."""
        if self._tokenizer is None:
            await asyncio.to_thread(lambda: self.tokenizer)

    def prompt_ids(
        self,
        messages: Sequence[Any],
        *,
        tools: Any = None,
        chat_template: str | None = None,
        add_generation_prompt: bool = True,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> list[int]:
        tokenizer = self.tokenizer
        if chat_template is None and tokenizer.chat_template is None:
            raise TemplateRenderError(NO_TEMPLATE_MESSAGE)
        from jinja2 import TemplateError

        try:
            result = tokenizer.apply_chat_template(
                [_vllm_message(m) for m in messages],
                tools=tools,
                chat_template=chat_template,
                add_generation_prompt=add_generation_prompt,
                tokenize=True,
                return_dict=False,
                **dict(template_kwargs or {}),
            )
        except (TemplateError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise TemplateRenderError(f"chat template failed: {exc}") from exc
        return _as_id_list(result)

    def prompt_tokens(
        self,
        messages: Sequence[Any],
        *,
        tools: Any = None,
        chat_template: str | None = None,
        add_generation_prompt: bool = True,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> int:
        return len(
            self.cached_prompt_ids(
                messages,
                tools=tools,
                chat_template=chat_template,
                add_generation_prompt=add_generation_prompt,
                template_kwargs=template_kwargs,
            )
        )

    def cached_prompt_ids(
        self,
        messages: Sequence[Any],
        *,
        tools: Any = None,
        chat_template: str | None = None,
        add_generation_prompt: bool = True,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> tuple[int, ...]:
        """prompt_ids(...), memoized on the request's JSON (benchmarks repeat requests)."""
        key = orjson.dumps([messages, tools, chat_template, add_generation_prompt, template_kwargs])
        ids = self._prompts.get(key)
        if ids is not None:
            self._prompts.move_to_end(key)
            return ids
        ids = tuple(
            self.prompt_ids(
                messages,
                tools=tools,
                chat_template=chat_template,
                add_generation_prompt=add_generation_prompt,
                template_kwargs=template_kwargs,
            )
        )
        self._prompts[key] = ids
        if len(self._prompts) > _PROMPT_CACHE_SIZE:
            self._prompts.popitem(last=False)
        return ids

    def script(self, seed: int, choice: int, min_tokens: int) -> Script:
        """The completion for (seed, choice) with at least ``min_tokens`` tokens; a longer
        script starts with the shorter one, so a cap only ever cuts the same text."""
        key = (seed, choice)
        script = self._scripts.get(key)
        if script is not None and len(script.ids) >= min_tokens:
            self._scripts.move_to_end(key)
            return script
        if min_tokens > MAX_SCRIPT_TOKENS:
            raise ValueError(f"gpusim generates at most {MAX_SCRIPT_TOKENS} tokens")
        copies = _INITIAL_COPIES
        while True:
            script = self.build_script(completion_text(seed, choice, copies))
            if len(script.ids) >= min_tokens:
                break
            copies *= 2
        self._scripts[key] = script
        if len(self._scripts) > _SCRIPT_CACHE_SIZE:
            self._scripts.popitem(last=False)
        return script

    def build_script(self, text: str) -> Script:
        from tokenizers.decoders import DecodeStream

        backend = self.tokenizer.backend_tokenizer
        ids = backend.encode(text, add_special_tokens=False).ids
        # vLLM's fast incremental detokenizer: tokenizers' DecodeStream, which yields None
        # while the decoded bytes end in an incomplete UTF-8 character.
        stream = DecodeStream(skip_special_tokens=True)
        deltas = tuple(stream.step(backend, i) or "" for i in ids)
        return Script(ids=tuple(ids), deltas=deltas)


class ModelRegistry:
    """The served models by id."""

    def __init__(self, tokenizers_dir: Path, names: Sequence[str]) -> None:
        self._models = {name: SimModel(name, Path(tokenizers_dir) / name) for name in names}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._models)

    def get(self, name: str) -> SimModel | None:
        return self._models.get(name)

    def preload(self) -> None:
        for model in self._models.values():
            _ = model.tokenizer
