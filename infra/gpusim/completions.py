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
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from gpusim.chat import ChatEndpoint, Work, _simulated_failure
from gpusim.engine import Admission, SeqSpec
from gpusim.errors import RequestError
from gpusim.generate import ChoiceResult, run_choice
from gpusim.models import SimModel, load_tokenizer
from gpusim.params import parse_request
from gpusim.structured import logprobs_for
from gpusim.wire import ChunkEncoder, sse, usage

_PLACEHOLDER = [{"role": "user", "content": ""}]
MAX_LOGPROBS = 20


def completion_id() -> str:
    return "cmpl-" + os.urandom(16).hex()


def text_body(
    model: str,
    prompt_tokens: int,
    results: Sequence[ChoiceResult],
    *,
    with_usage: bool,
    cached_tokens: int | None = None,
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
                "logprobs": r.logprobs[0] if r.logprobs else None,
                "finish_reason": r.finish_reason,
                "stop_reason": r.stop_reason,
                "prompt_logprobs": None,
            }
            for index, r in enumerate(results)
        ],
    }
    if with_usage:
        completion = sum(r.completion_tokens for r in results)
        body["usage"] = usage(prompt_tokens, completion, cached_tokens)
    return orjson.dumps(body)


class TextChunkEncoder(ChunkEncoder):
    """``text_completion`` chunks: the same events as chat's, in the legacy shape."""

    def __init__(self, model: str, *, usage_field: bool) -> None:
        super().__init__(model, usage_field=usage_field)
        self._base["id"] = completion_id()
        self._base["object"] = "text_completion"

    def _text(
        self, index: int, text: str, result: ChoiceResult, j: int, *, final: bool = False
    ) -> bytes:
        return self._chunk(
            {
                "index": index,
                "text": text,
                "logprobs": _token_logprobs(result, j),
                "finish_reason": result.finish_reason if final else None,
                "stop_reason": result.stop_reason if final else None,
            }
        )

    def role(self, _index: int) -> bytes:
        return b""  # no role chunk on this route

    def step(self, index: int, result: ChoiceResult, j: int) -> bytes | None:
        if j == len(result.steps) - 1:
            return None  # the last token rides on the finish chunk
        if not result.steps[j] and not result.logprobs:
            return None
        return self._text(index, result.steps[j], result, j)

    def finish(self, index: int, result: ChoiceResult) -> bytes:
        last = len(result.steps) - 1
        text = result.steps[-1] if result.steps else ""
        return self._text(index, text, result, last, final=True)

    def usage(
        self, prompt_tokens: int, completion_tokens: int, cached_tokens: int | None = None
    ) -> bytes:
        counts = usage(prompt_tokens, completion_tokens, cached_tokens)
        return sse({**self._base, "choices": [], "usage": counts})


def _token_logprobs(result: ChoiceResult, j: int) -> dict[str, Any] | None:
    """Token j's part of the choice's legacy logprobs (a streamed chunk carries one token)."""
    if not result.logprobs or j < 0:
        return None
    return {key: values[j : j + 1] for key, values in result.logprobs[0].items()}


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
    return load_tokenizer(folder)


def prompt_ids(model: SimModel, prompt: str | list[int]) -> list[int]:
    if isinstance(prompt, list):
        return prompt
    # vLLM: CompletionRequest.add_special_tokens (and the embeddings one) default to True
    return list(_auto_tokenizer(model.folder)(prompt, add_special_tokens=True)["input_ids"])


def count_prompt(model: SimModel, prompt: str | list[int]) -> int:
    return len(prompt_ids(model, prompt))


def logprobs_of(body: Any) -> int | None:
    """vLLM's CompletionRequest.logprobs: an integer, the number of top alternatives (0 to
    20, vLLM's default --max-logprobs), not chat's boolean; pydantic's lax mode reads
    true/false as 1/0."""
    value = body.get("logprobs")
    if value is None:
        return None
    if not isinstance(value, int):
        raise RequestError(400, "logprobs must be an integer", param="logprobs")
    if value < 0:
        raise RequestError(400, "`logprobs` must be a positive value.", param="logprobs")
    if value > MAX_LOGPROBS:
        message = f"Requested sample logprobs of {value}, which is greater than max allowed: 20"
        raise RequestError(400, message, param="logprobs")
    return int(value)


def completion_logprobs(model: SimModel, result: ChoiceResult, top: int) -> dict[str, Any]:
    """The legacy shape (vLLM's CompletionLogProbs): per token its text, logprob, text
    offset and a {token: logprob} map of the top alternatives (None when ``top`` is 0)."""
    entries = logprobs_for(model, result.token_ids, top)
    offsets, offset = [], 0
    for step in result.steps:
        offsets.append(offset)
        offset += len(step)
    return {
        "text_offset": offsets,
        "token_logprobs": [e["logprob"] for e in entries],
        "tokens": [e["token"] for e in entries],
        "top_logprobs": [
            {t["token"]: t["logprob"] for t in e["top_logprobs"]} if top else None for e in entries
        ],
    }


class CompletionsEndpoint(ChatEndpoint):
    body_for = staticmethod(text_body)
    encoder_class = TextChunkEncoder

    async def _prepare(self, raw: bytes, arrival: float) -> Work:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise RequestError(400, f"Invalid JSON body: {exc}") from exc
        prompts = prompts_of(body)
        logprobs = logprobs_of(body)
        chat_body = {**body, "messages": _PLACEHOLDER, "logprobs": None}
        req = parse_request(chat_body, self.config)
        failure = _simulated_failure(req)
        if failure is not None:
            raise failure
        model = self.registry.get(req.model)
        if model is None:
            raise RequestError(404, f"The model `{req.model}` does not exist.", param="model")
        self._check_priority(req)
        await model.ensure_loaded()
        await asyncio.to_thread(_auto_tokenizer, model.folder)
        ids = [tuple(prompt_ids(model, p)) for p in prompts]
        # each prompt is its own engine request, checked and capped on its own
        capped = [self._limits(self._within_context(req, len(prompt))) for prompt in ids]
        results, seqs = [], []
        for p, prompt in enumerate(ids):
            for choice in range(req.n):
                result = run_choice(partial(model.script, req.seed + p, choice), capped[p])
                if logprobs is not None:
                    result = replace(
                        result, logprobs=[completion_logprobs(model, result, logprobs)]
                    )
                results.append(result)
                seqs.append(SeqSpec(prompt, len(prompt), len(result.steps)))
        prompt_tokens = sum(len(prompt) for prompt in ids)
        return Work(req, prompt_tokens, results, seqs, arrival)

    def _cached_tokens(self, work: Work, admission: Admission) -> int | None:
        if not self.config.enable_prompt_tokens_details:
            return None
        # the first choice of each prompt: the others share its blocks
        return sum(admission.cached_tokens[:: work.req.n]) or None
