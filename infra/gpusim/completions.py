"""POST /v1/completions as vLLM serves it (serving_completion.py): each prompt tokenized
with the tokenizer's special tokens (BOS where it adds one), token-id prompts taken as
they are; prompt_tokens summed once per prompt; choice i of prompt p has index p * n + i;
`text_completion` bodies and chunks, each token's text in its own chunk and the finish
reason on the chunk of the last token."""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from gpusim.chat import ChatEndpoint, _simulated_failure
from gpusim.errors import RequestError
from gpusim.generate import ChoiceResult, run_choice
from gpusim.models import SimModel
from gpusim.params import ChatRequest, parse_request
from gpusim.wire import ChunkEncoder, sse, usage

_PLACEHOLDER = [{"role": "user", "content": ""}]


def completion_id() -> str:
    return "cmpl-" + os.urandom(16).hex()


def text_body(
    model: str, prompt_tokens: int, results: Sequence[ChoiceResult], *, with_usage: bool
) -> bytes:
    body: dict[str, Any] = {
        "id": completion_id(),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": index,
                "text": r.content,
                "logprobs": None,
                "finish_reason": r.finish_reason,
                "stop_reason": r.stop_reason,
                "prompt_logprobs": None,
            }
            for index, r in enumerate(results)
        ],
    }
    if with_usage:
        body["usage"] = usage(prompt_tokens, sum(r.completion_tokens for r in results))
    return orjson.dumps(body)


class TextChunkEncoder(ChunkEncoder):
    """``text_completion`` chunks: the same events as chat's, in the legacy shape."""

    def __init__(self, model: str, *, usage_field: bool) -> None:
        super().__init__(model, usage_field=usage_field)
        self._base["id"] = completion_id()
        self._base["object"] = "text_completion"

    def _text(self, index: int, text: str, result: ChoiceResult | None) -> bytes:
        return self._chunk(
            {
                "index": index,
                "text": text,
                "logprobs": None,
                "finish_reason": result.finish_reason if result else None,
                "stop_reason": result.stop_reason if result else None,
            }
        )

    def role(self, index: int) -> bytes:
        return b""  # no role chunk on this route

    def step(self, index: int, result: ChoiceResult, j: int) -> bytes | None:
        if j == len(result.steps) - 1 or not result.steps[j]:
            return None  # the last token's text rides on the finish chunk
        return self._text(index, result.steps[j], None)

    def finish(self, index: int, result: ChoiceResult) -> bytes:
        return self._text(index, result.steps[-1] if result.steps else "", result)

    def usage(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        return sse({**self._base, "choices": [], "usage": usage(prompt_tokens, completion_tokens)})


def prompts_of(body: Any) -> list[str] | list[list[int]]:
    """vLLM's parse_and_batch_prompt: a text, texts, token ids, or lists of token ids."""
    prompt = body.get("prompt") if isinstance(body, dict) else None
    if isinstance(prompt, str) and prompt:
        return [prompt]
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, int) and not isinstance(p, bool) for p in prompt):
            return [prompt]
        if all(isinstance(p, str) and p for p in prompt):
            return prompt
        if all(isinstance(p, list) and p and all(isinstance(t, int) for t in p) for p in prompt):
            return prompt
    message = "prompt must be a string, array of strings or token ids"
    raise RequestError(400, message, param="prompt")


@functools.lru_cache(maxsize=32)
def _auto_tokenizer(folder: Path) -> Any:
    """transformers' AutoTokenizer, as vLLM loads it: it may rebuild the tokenizer.json
    pipeline (Llama classes), which matters for raw text such as a leading space."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def prompt_ids(model: SimModel, prompt: str | list[int]) -> list[int]:
    if isinstance(prompt, list):
        return prompt
    # vLLM: CompletionRequest.add_special_tokens (and the embeddings one) default to True
    return list(_auto_tokenizer(model.folder)(prompt, add_special_tokens=True)["input_ids"])


def count_prompt(model: SimModel, prompt: str | list[int]) -> int:
    return len(prompt_ids(model, prompt))


class CompletionsEndpoint(ChatEndpoint):
    body_for = staticmethod(text_body)
    encoder_class = TextChunkEncoder

    async def _prepare(self, raw: bytes) -> tuple[ChatRequest, int, list[ChoiceResult]]:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise RequestError(400, f"Invalid JSON body: {exc}") from exc
        prompts = prompts_of(body)
        req = parse_request({**body, "messages": _PLACEHOLDER}, self.config)
        failure = _simulated_failure(req)
        if failure is not None:
            raise failure
        model = self.registry.get(req.model)
        if model is None:
            raise RequestError(404, f"The model `{req.model}` does not exist.", param="model")
        await model.ensure_loaded()
        await asyncio.to_thread(_auto_tokenizer, model.folder)
        prompt_tokens = sum(count_prompt(model, p) for p in prompts)
        limits = self._limits(req)
        results = [
            run_choice(partial(model.script, req.seed + p, choice), limits)
            for p in range(len(prompts))
            for choice in range(req.n)
        ]
        return req, prompt_tokens, results
