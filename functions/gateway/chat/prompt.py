"""What the chat template sees, the checks decided before forwarding, and media billing.

Messages are normalized the way vLLM's chat-message parsing does it (string content format,
vllm/entrypoints/chat_utils.py `_parse_chat_message_content` and `_postprocess_messages`):
content None becomes "", text parts are joined with a newline, media parts add no text;
assistant `tool_calls` are kept, with JSON-text `arguments` parsed to objects (invalid JSON
becomes {}); tool messages keep `tool_call_id`; a string `name` is kept. The request's
`tools` are handed to the template as sent (HF `apply_chat_template(..., tools=...)`).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from gateway.chat.messages import PART_MODALITY, AssistantMessage, ToolMessage, UserMessage
from gateway.chat.protocol import ChatCompletionRequest
from gateway.errors import InvalidRequestError
from gateway.models.registry import ModelConfig


# Billed per image / audio part when a multimodal request's upstream reports no usage (the
# gateway cannot count media tokens: only the model's processor can). 765 is what OpenAI
# bills a 512x512 high-detail image; Qwen2.5-VL spends ~1 token per 28x28 pixels, so it is
# the right order for a typical photo. Audio: ~30 s of Whisper-style features at 25 tokens/s.
def _arguments(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return {}
    return value if isinstance(value, dict | list) else {}


def _tool_calls(message: AssistantMessage) -> list[dict[str, Any]] | None:
    if message.tool_calls is None or not message.tool_calls:
        return None  # vLLM drops an empty list, keeping the template on the plain path
    calls = []
    for call in message.tool_calls:
        item = call.model_dump(exclude_unset=True)
        function = dict(item["function"])
        function["arguments"] = _arguments(function.get("arguments"))
        item["function"] = function
        calls.append(item)
    return calls


def template_messages(request: ChatCompletionRequest) -> list[dict[str, Any]]:
    """The conversation as vLLM hands it to the chat template."""
    out: list[dict[str, Any]] = []
    for message in request.messages:
        item: dict[str, Any] = {"role": message.role, "content": message.text()}
        if isinstance(message, AssistantMessage):
            calls = _tool_calls(message)
            if calls is not None:
                item["tool_calls"] = calls
            extra = message.model_extra or {}
            if isinstance(extra.get("reasoning"), str):
                item["reasoning"] = item["reasoning_content"] = extra["reasoning"]
        elif isinstance(message, ToolMessage):
            item["tool_call_id"] = message.tool_call_id
        if isinstance(message.name, str):
            item["name"] = message.name
        out.append(item)
    return out


def template_tools(request: ChatCompletionRequest) -> list[dict[str, Any]] | None:
    if not request.tools:
        return None
    return [tool.model_dump(exclude_unset=True, by_alias=True) for tool in request.tools]


def template_kwargs(request: ChatCompletionRequest) -> dict[str, Any] | None:
    """vLLM's `chat_template_kwargs` (an extra field, forwarded), which the upstream renders
    the prompt with, so the gateway counts with them too. A request's own `chat_template`
    (top level or in the kwargs) is refused, as vLLM refuses it unless started with
    --trust-request-chat-template: the gateway could not count what it renders."""
    extra = request.model_extra or {}
    kwargs = extra.get("chat_template_kwargs")
    if extra.get("chat_template") is not None or (
        isinstance(kwargs, dict) and kwargs.get("chat_template") is not None
    ):
        raise InvalidRequestError(
            "A request's own chat_template is not accepted; the model's template is used.",
            param="chat_template",
        )
    if kwargs is not None and not isinstance(kwargs, dict):
        raise InvalidRequestError(
            "Invalid value for 'chat_template_kwargs': expected an object.",
            param="chat_template_kwargs",
        )
    return kwargs or None


def media_parts(request: ChatCompletionRequest) -> list[str]:
    """The modality of each image / audio part, in order."""
    found: list[str] = []
    for message in request.messages:
        if isinstance(message, UserMessage) and isinstance(message.content, list):
            found.extend(PART_MODALITY[p.type] for p in message.content if p.type in PART_MODALITY)
    return found


def check_modalities(request: ChatCompletionRequest, model: ModelConfig) -> list[str]:
    """The request's media parts; a 400 naming the first part the model cannot take."""
    for m, message in enumerate(request.messages):
        if not isinstance(message, UserMessage) or not isinstance(message.content, list):
            continue
        for p, part in enumerate(message.content):
            modality = PART_MODALITY.get(part.type)
            if modality is not None and not model.accepts(modality):
                raise InvalidRequestError(
                    f"The model `{model.id}` does not accept {modality} input: content part "
                    f"messages[{m}].content[{p}] is of type '{part.type}'. Send text only, or "
                    "use a model whose configuration lists this modality.",
                    param=f"messages.[{m}].content.[{p}].type",
                    code="unsupported_content_part",
                )
    return media_parts(request)


# What a chat template adds around the conversation, in tokens, at most: role headers per
# message, and fixed text (a default system prompt, the tool-use preamble).
_TEMPLATE_TOKENS_PER_MESSAGE = 16
_TEMPLATE_TOKENS_FIXED = 1024


def prompt_upper_bound(request: ChatCompletionRequest) -> int:
    """More tokens than the rendered prompt can have, without a tokenizer: every token
    of a byte-level BPE or byte-fallback SentencePiece vocabulary covers at least one
    byte, and the JSON of the messages and tools has at least their text's bytes
    (tests/gateway/tokens checks it against every reference conversation)."""
    messages = template_messages(request)
    size = len(orjson.dumps(messages, default=str))
    tools = template_tools(request)
    if tools:
        size += len(orjson.dumps(tools, default=str))
    return size + _TEMPLATE_TOKENS_PER_MESSAGE * len(messages) + _TEMPLATE_TOKENS_FIXED


def tool_call_texts(tool_calls: Any) -> list[str]:
    """The generated text of a message's tool calls, for the gateway's own completion
    estimate: each call's function name and argument text."""
    texts = []
    for call in tool_calls if isinstance(tool_calls, list) else []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            texts.append(str(function.get("name") or "") + str(function.get("arguments") or ""))
    return texts
