"""Generation other than free text: tool calls, JSON output, logprobs, media parts."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from gpusim.generate import EOS_ID, ChoiceResult, Limits, run_choice
from gpusim.models import Script, SimModel
from gpusim.params import ChatRequest
from gpusim.text import completion_text
from gpusim.toolcalls import (
    arguments_for,
    auto_calls,
    parsed_calls,
    parser_for,
    plan_calls,
    relevant_first,
    render_calls,
    stream_deltas,
)

# Prompt tokens per image / audio part of a multimodal model (vLLM counts the expanded
# placeholder tokens in prompt_tokens; their number depends on the model's processor).
MEDIA_PROMPT_TOKENS = {"image_url": 256, "input_audio": 188}


def script_for_text(model: SimModel, text: str) -> Script:
    from tokenizers.decoders import DecodeStream

    backend = model.tokenizer.backend_tokenizer
    ids = backend.encode(text, add_special_tokens=False).ids
    stream = DecodeStream(skip_special_tokens=True)
    return Script(ids=tuple(ids), deltas=tuple(stream.step(backend, i) or "" for i in ids))


def _run_text(model: SimModel, req: ChatRequest, text: str) -> ChoiceResult:
    """Generate exactly `text` then EOS (as guided decoding would), capped by max_tokens."""
    script = script_for_text(model, text)
    limits = Limits(natural_tokens=len(script.ids) + 1, max_tokens=req.max_tokens)
    return run_choice(lambda _n: script, limits)


def tool_choice_result(model: SimModel, req: ChatRequest, choice: int) -> ChoiceResult:
    named = isinstance(req.tool_choice, Mapping)
    asked = auto_calls(req.tools, req.messages, req.sim.tool_calls)
    count = max(1, asked) if req.tool_choice == "required" else asked
    if named or not req.parallel_tool_calls:
        count = 1
    parser = parser_for(model.name)
    tools = relevant_first(req.tools, req.messages)
    calls = plan_calls(tools, req.tool_choice, count, req.seed + choice)
    tool_text = render_calls(calls, parser)
    result = _run_text(model, req, tool_text.text)
    tool_calls = parsed_calls(tool_text, result.content)
    finish = result.finish_reason
    if tool_calls and finish == "stop" and not named:
        finish = "tool_calls"
    message: dict[str, Any] = {"role": "assistant", "refusal": None}
    if tool_calls:
        message["content"] = "" if named else None  # vLLM: null for auto and required
        message["tool_calls"] = tool_calls
    else:  # cut off before a call was complete: the parser returns the text
        message["content"] = result.content
    deltas = tuple(stream_deltas(tool_text, result.steps))
    return dataclasses.replace(result, finish_reason=finish, message=message, deltas=deltas)


def json_result(model: SimModel, req: ChatRequest, choice: int) -> ChoiceResult:
    """response_format json_object / json_schema: the output is one JSON object."""
    if isinstance(req.json_schema, Mapping) and req.json_schema.get("properties"):
        value: Any = arguments_for(req.json_schema, req.seed + choice)
    else:
        words = completion_text(req.seed, choice, 1).split()[:12]
        value = {"answer": " ".join(words)}
    return _run_text(model, req, json.dumps(value, ensure_ascii=False))


def _entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}


def logprobs_for(model: SimModel, token_ids: Sequence[int], top: int) -> list[dict[str, Any]]:
    """vLLM's per-token logprob entries: the sampled token and `top` alternatives, most
    likely first (deterministic values; the sampled token is the most likely)."""
    tokenizer = model.tokenizer
    backend = tokenizer.backend_tokenizer
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    vocab = backend.get_vocab_size()
    entries = []
    for token_id in token_ids:
        real = eos if token_id == EOS_ID else token_id
        logprob = -round(0.01 + (real % 13) * 0.03, 4)
        alternatives = [
            _entry(backend.decode([(real + 1 + k) % vocab]), logprob - 1.0 - k)
            for k in range(max(top - 1, 0))
        ]
        sampled = _entry(backend.decode([real], skip_special_tokens=False), logprob)
        entry = {**sampled, "top_logprobs": ([sampled, *alternatives] if top else [])}
        entries.append(entry)
    return entries


def null_content_as_empty(messages: Sequence[Any]) -> list[Any]:
    """vLLM parses a missing or null content (an assistant message that only calls tools)
    as no parts, which its string content format renders as ""."""
    return [
        {**m, "content": ""} if isinstance(m, Mapping) and m.get("content") is None else m
        for m in messages
    ]


def strip_media(messages: Sequence[Any]) -> tuple[list[Any], int]:
    """Messages with image/audio parts removed (their text parts kept), and the prompt
    tokens those parts add."""
    out: list[Any] = []
    extra = 0
    for message in messages:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, list):
            kept = []
            for part in content:
                kind = part.get("type") if isinstance(part, Mapping) else None
                if kind in MEDIA_PROMPT_TOKENS:
                    extra += MEDIA_PROMPT_TOKENS[kind]
                else:
                    kept.append(part)
            message = {**message, "content": kept}
        out.append(message)
    return out, extra
