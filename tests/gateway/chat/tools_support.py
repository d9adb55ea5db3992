"""Shared pieces of the tool-calling contract tests: a gateway in front of a gpusim that
serves qwen3 as multimodal, transformers' reference counts, and a streamed-chat reader."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import openai

from tests.conftest import TEST_MODELS, Gateway, running_gateway
from tests.support.schemas import validate
from tests.support.sdk import openai_client
from tests.support.servers import serve_asgi
from tests.support.sse import events

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
CLOCK = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The local time in a time zone.",
        "parameters": {
            "type": "object",
            "properties": {"tz": {"type": "string"}},
            "required": ["tz"],
        },
    },
}
TOOLS = [WEATHER, CLOCK]
# A small context window for the overflow test (the prompts here are ~200 tokens).
SMALL_CONTEXT = 300


def models_config(sim_url: str) -> str:
    def entry(public: str, folder: str, **extra: Any) -> dict[str, Any]:
        upstream = {"type": "openai", "base_url": sim_url, "model": folder}
        return {"id": public, "tokenizer": folder, "upstream": upstream, **extra}

    models = [entry(public, folder) for public, folder in TEST_MODELS.items() if public != "qwen3"]
    models.append(entry("qwen3", "qwen3", modalities=["text", "image", "audio"]))
    models.append(entry("qwen3-small", "qwen3", max_model_len=SMALL_CONTEXT))
    return json.dumps({"models": models})


@cache
def _auto_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def reference_prompt_tokens(
    folder: Path, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
) -> int:
    """transformers' own count: apply_chat_template(messages, tools=tools), tokenized."""
    ids = _auto_tokenizer(folder).apply_chat_template(
        messages, tools=tools, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    return len(ids)


def template_supports_tools(folder: Path) -> bool:
    template = _auto_tokenizer(folder).chat_template
    return isinstance(template, str) and "tools" in template


def client(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai_client(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=30)


def stream(
    gateway: Gateway, key: str, body: dict[str, Any], schemas: Path
) -> tuple[list[dict[str, Any]], str]:
    """Every chunk of a streamed request (each validated against OpenAI's schema, each with
    the gateway's id and model), and the request id."""
    with gateway.stream_chat(key, {**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        request_id = response.headers["x-request-id"]
        received = [data for _, data in events(response)]
    assert received[-1] == "[DONE]"
    chunks = received[:-1]
    for chunk in chunks:
        validate(schemas, "CreateChatCompletionStreamResponse", chunk)
        assert chunk["id"] == f"chatcmpl-{request_id}"
        assert chunk["model"] == body["model"]
    return chunks, request_id


def assembled_tool_calls(chunks: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Tool calls put together from streamed fragments, by index, as SDKs do."""
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            for fragment in choice["delta"].get("tool_calls") or []:
                call = calls.setdefault(
                    fragment["index"], {"id": None, "name": "", "arguments": "", "pieces": 0}
                )
                if fragment.get("id"):
                    call["id"] = fragment["id"]
                function = fragment.get("function") or {}
                call["name"] += function.get("name") or ""
                if function.get("arguments"):
                    call["arguments"] += function["arguments"]
                    call["pieces"] += 1
    return calls


def finish_reasons(chunks: list[dict[str, Any]]) -> list[str]:
    return [c["finish_reason"] for ch in chunks for c in ch["choices"] if c["finish_reason"]]


def serve_multimodal_sim(tokenizers_dir: Path) -> Iterator[str]:
    from gpusim import SimConfig, create_app

    config = SimConfig(tokenizers_dir=tokenizers_dir, multimodal=("qwen3",))
    with serve_asgi(create_app(config)) as url:
        yield url


def serve_gateway(tokenizers_dir: Path, sim_url: str) -> Iterator[Gateway]:
    with running_gateway(tokenizers_dir, sim_url, models_config=models_config(sim_url)) as gw:
        yield gw
