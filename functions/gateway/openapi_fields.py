"""Descriptions of the wire models' fields for the OpenAPI description (openapi.py adds
each where the model has none). Kept apart so the models stay lean: chat/protocol.py is on
the request path."""

from __future__ import annotations

FIELD_DOCS: dict[str, dict[str, str]] = {
    "ChatCompletionRequest": {
        "messages": "The conversation: system, user and assistant messages, oldest first.",
        "model": "A model id from `GET /v1/models`.",
        "max_tokens": "Most tokens to generate. Without it (and max_completion_tokens) the "
        "gateway sends and reserves DEFAULT_MAX_TOKENS (4096 by default) against the key's "
        "tpm and monthly budget: set it to fit a small limit.",
        "max_completion_tokens": "OpenAI's newer name for max_tokens; wins when both are set.",
        "stream": "Stream the answer as server-sent events.",
        "stream_options": "`include_usage: true` adds a last chunk with the usage.",
        "n": "How many choices to generate; each reserves max_tokens.",
        "temperature": "Sampling temperature, 0 to 2.",
        "top_p": "Nucleus sampling, 0 to 1.",
        "frequency_penalty": "-2 to 2.",
        "presence_penalty": "-2 to 2.",
        "stop": "Up to 4 sequences where generation stops.",
        "seed": "Sampling seed, where the upstream supports it.",
        "logit_bias": "Token id to bias, -100 to 100.",
        "logprobs": "Return log probabilities of the output tokens.",
        "top_logprobs": "How many most likely tokens to return per position (0 to 20).",
        "user": "An end-user id, passed upstream.",
        "top_k": "vLLM's top-k sampling (-1: off).",
        "model_params": "Sampling fields nested here are merged into the request.",
    },
    "ChatCompletion": {
        "id": "`chatcmpl-` and the request id (the `x-request-id` header).",
        "object": "Always `chat.completion`.",
        "created": "Unix seconds.",
        "model": "The model id the request named.",
        "choices": "The generated choices.",
        "usage": "Tokens billed: the upstream's counts where it reported them, else the "
        "gateway's own.",
    },
    "Usage": {
        "prompt_tokens": "Tokens of the rendered chat template.",
        "completion_tokens": "Tokens generated.",
        "total_tokens": "Their sum.",
    },
    "ErrorDetail": {
        "message": "What went wrong, and what to do about it.",
        "type": "OpenAI's error type, e.g. `invalid_request_error`, `rate_limit_error`.",
        "param": "The request parameter at fault, if one is.",
        "code": "A machine-readable code, e.g. `invalid_api_key`, `rate_limit_exceeded`.",
    },
    "ErrorResponse": {"error": "OpenAI's error envelope."},
    "ChatMessage": {
        "role": "`system`, `user` or `assistant`.",
        "content": "The text, or a list of text parts (joined with newlines).",
        "name": "An optional participant name.",
    },
    "TextContentPart": {"type": "Always `text`.", "text": "The text."},
    "StreamOptions": {"include_usage": "Send a last chunk with the request's usage."},
    "Choice": {
        "index": "The choice's position.",
        "message": "The generated message.",
        "logprobs": "Log probabilities, when asked for.",
        "finish_reason": "`stop`, `length` (max_tokens reached), `tool_calls` or `content_filter`.",
    },
    "ResponseMessage": {
        "role": "Always `assistant`.",
        "content": "The generated text.",
        "refusal": "A refusal, if the model refused.",
    },
}
