"""Descriptions of the wire models' fields for the OpenAPI description (openapi.py adds
each where the model has none). Kept apart so the models stay lean: chat/protocol.py is on
the request path."""

from __future__ import annotations

from gateway.openapi_fields_apis import APIS_FIELD_DOCS

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
        "tools": "Functions the model may call; rendered into the prompt by the model's own "
        "chat template, so they count as prompt tokens.",
        "tool_choice": "`none`, `auto`, `required`, or a named function the model must call.",
        "parallel_tool_calls": "Whether the model may call several tools in one turn.",
        "response_format": "`text`, `json_object` or `json_schema`, forwarded unchanged.",
    },
    "SystemMessage": {
        "role": "`system`, or `developer` (OpenAI's successor, forwarded as `system`).",
        "content": "Instructions: a string or a list of text parts.",
        "name": "An optional participant name.",
    },
    "UserMessage": {
        "role": "Always `user`.",
        "content": "A string, or a list of text, `image_url` and `input_audio` parts (media "
        "only for models whose configuration lists them).",
        "name": "An optional participant name.",
    },
    "AssistantMessage": {
        "role": "Always `assistant`.",
        "content": "What the model said; may be null when it called tools.",
        "refusal": "The model's refusal, if any.",
        "tool_calls": "The tool calls the model made in this turn.",
        "name": "An optional participant name.",
    },
    "ToolMessage": {
        "role": "Always `tool`.",
        "content": "The tool's result.",
        "tool_call_id": "The id of the tool call this answers.",
        "name": "The tool's name (optional).",
    },
    "ToolCall": {
        "id": "The call's id, echoed by the `tool` message that answers it.",
        "type": "Always `function`.",
        "function": "The function called and its arguments.",
    },
    "FunctionCall": {
        "name": "The function's name.",
        "arguments": "The arguments as JSON text, as the model generated them.",
    },
    "Tool": {"type": "Always `function`.", "function": "The function's definition."},
    "FunctionDefinition": {
        "name": "The function's name.",
        "description": "What the function does, for the model.",
        "parameters": "A JSON Schema of the arguments.",
        "strict": "Whether the arguments must follow the schema exactly.",
    },
    "NamedToolChoice": {"type": "Always `function`.", "function": "The function to call."},
    "NamedFunction": {"name": "The function the model must call."},
    "ImageContentPart": {"type": "Always `image_url`.", "image_url": "The image."},
    "ImageUrl": {
        "url": "An https:// URL or a data: URL.",
        "detail": "`auto`, `low` or `high`.",
    },
    "AudioContentPart": {"type": "Always `input_audio`.", "input_audio": "The audio."},
    "InputAudio": {"data": "Base64-encoded audio.", "format": "`wav` or `mp3`."},
    "RefusalContentPart": {"type": "Always `refusal`.", "refusal": "The refusal text."},
    "ResponseFormatText": {"type": "Always `text`."},
    "ResponseFormatJsonObject": {"type": "Always `json_object`: the answer is a JSON object."},
    "ResponseFormatJsonSchema": {
        "type": "Always `json_schema`.",
        "json_schema": "The schema the answer must follow.",
    },
    "JsonSchema": {
        "name": "The schema's name.",
        "description": "What the answer is for.",
        "strict": "Whether the answer must follow the schema exactly.",
    },
    "ChatMessage": {
        "role": "`system`, `user` or `assistant`.",
        "content": "The text, or a list of text parts (joined with newlines).",
        "name": "An optional participant name.",
    },
    "TextContentPart": {"type": "Always `text`.", "text": "The text."},
    "StreamOptions": {"include_usage": "Send a last chunk with the request's usage."},
    **APIS_FIELD_DOCS,
}
