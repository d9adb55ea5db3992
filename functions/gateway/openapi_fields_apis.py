"""Descriptions of the Responses and Messages APIs' wire models' fields for the OpenAPI
description (openapi_fields.FIELD_DOCS includes them)."""

from __future__ import annotations

_TYPE = "The part's kind."

APIS_FIELD_DOCS: dict[str, dict[str, str]] = {
    "ResponsesRequest": {
        "model": "A model id from `GET /v1/models`.",
        "input": "A string (one user message) or a list of items: messages, "
        "`function_call` and `function_call_output` items, reasoning sent back.",
        "instructions": "A system message first; not carried over from a previous response.",
        "max_output_tokens": "Most tokens to generate (capped by the model's max_tokens; "
        "without it DEFAULT_MAX_TOKENS is sent and reserved).",
        "metadata": "Up to 16 keys of 64 characters, values of 512; echoed, not forwarded.",
        "parallel_tool_calls": "Whether the model may call several functions at once.",
        "previous_response_id": "Continue a stored response of this key's owner: the whole "
        "conversation is expanded, counted and billed.",
        "store": "Keep the response (default true) for previous_response_id and GET, "
        "RESPONSES_RETENTION_DAYS.",
        "stream": "Stream named server-sent events.",
        "temperature": "Sampling temperature, 0 to 2.",
        "top_p": "Nucleus sampling, 0 to 1.",
        "top_k": "vLLM's top-k sampling (-1: off).",
        "text": "`format`: text, json_object or json_schema.",
        "tool_choice": "none, auto, required, or a named function.",
        "tools": "Function tools only (a hosted tool is a 400).",
        "user": "An end-user id, passed upstream.",
        "background": "Accepted and ignored (the gateway answers in the foreground).",
        "include": "Extra output to include; accepted as vLLM does.",
    },
    "MessageItem": {
        "type": "`message` (may be left out).",
        "role": "user, assistant, system or developer (sent as system).",
        "content": "A string or a list of input_text / input_image / output_text parts.",
        "id": "The item's id, when sent back.",
        "status": "The item's status, when sent back.",
    },
    "FunctionCallItem": {
        "type": "`function_call`.",
        "call_id": "The call's id, which its output answers.",
        "name": "The function called.",
        "arguments": "The arguments, as JSON text.",
        "id": "The item's id, when sent back.",
        "status": "The item's status, when sent back.",
    },
    "FunctionCallOutputItem": {
        "type": "`function_call_output`.",
        "call_id": "The call this answers.",
        "output": "The function's result.",
        "id": "The item's id, when sent back.",
        "status": "The item's status, when sent back.",
    },
    "ReasoningItem": {
        "type": "`reasoning`.",
        "content": "Reasoning text sent back (given to the template as the answer's reasoning).",
        "summary": "A reasoning summary (used when there is no reasoning text).",
    },
    "InputText": {"type": _TYPE, "text": "The text."},
    "OutputText": {"type": _TYPE, "text": "An earlier answer's text."},
    "Refusal": {"type": _TYPE, "refusal": "An earlier refusal's text."},
    "InputImage": {
        "type": _TYPE,
        "image_url": "An https:// or data: URL (user messages only).",
        "file_id": "Not supported (no files API).",
        "detail": "Accepted and ignored.",
    },
    "TextConfig": {"format": "The output format."},
    "FormatText": {"type": "`text`: free text."},
    "FormatJsonObject": {"type": "`json_object`: one JSON object."},
    "FormatJsonSchema": {
        "type": "`json_schema`: output matching `schema`.",
        "name": "The schema's name.",
        "description": "What the output is.",
        "strict": "Follow the schema exactly.",
    },
    "ToolChoiceFunction": {"type": "`function`.", "name": "The function to call."},
    "MessagesRequest": {
        "model": "A model id from `GET /v1/models`.",
        "messages": "The conversation: user and assistant turns, with text, image, "
        "tool_use and tool_result blocks.",
        "system": "The system prompt: a string or text blocks.",
        "max_tokens": "Most tokens to generate (required, as Anthropic's).",
        "metadata": "`user_id` is passed upstream as the end user.",
        "stop_sequences": "Strings that end the generation (stop_reason stop_sequence).",
        "stream": "Stream Anthropic's server-sent events.",
        "temperature": "Sampling temperature, 0 to 1.",
        "top_k": "Top-k sampling.",
        "top_p": "Nucleus sampling, 0 to 1.",
        "tool_choice": "auto, any, tool (named) or none.",
        "tools": "Custom tools (`input_schema`); a server tool is a 400.",
    },
    "CountTokensRequest": {
        "model": "A model id from `GET /v1/models`.",
        "messages": "The conversation to count.",
        "system": "The system prompt: a string or text blocks.",
        "tool_choice": "auto, any, tool (named) or none.",
        "tools": "Custom tools, counted as the template renders them.",
    },
    "Message": {"role": "user or assistant.", "content": "A string or a list of blocks."},
    "Metadata": {"user_id": "An end-user id, passed upstream."},
    "TextBlock": {"type": "`text`.", "text": "The text."},
    "ImageBlock": {"type": "`image`.", "source": "base64 data or an https:// URL."},
    "Base64ImageSource": {
        "type": "`base64`.",
        "media_type": "image/jpeg, png, gif or webp.",
        "data": "The image, base64.",
    },
    "UrlImageSource": {"type": "`url`.", "url": "An https:// URL."},
    "ToolUseBlock": {
        "type": "`tool_use`.",
        "id": "The call's id.",
        "name": "The tool called.",
        "input": "The arguments.",
    },
    "ToolResultBlock": {
        "type": "`tool_result`.",
        "tool_use_id": "The call this answers.",
        "content": "The result: a string, or text and image blocks.",
        "is_error": "Whether the tool failed.",
    },
    "ThinkingBlock": {"type": "`thinking`.", "thinking": "Reasoning sent back."},
    "ToolChoiceAuto": {
        "type": "`auto`.",
        "disable_parallel_tool_use": "At most one tool call.",
    },
    "ToolChoiceAny": {
        "type": "`any`: some tool must be called.",
        "disable_parallel_tool_use": "At most one tool call.",
    },
    "ToolChoiceTool": {
        "type": "`tool`.",
        "name": "The tool to call.",
        "disable_parallel_tool_use": "At most one tool call.",
    },
    "ToolChoiceNone": {"type": "`none`: no tool calls."},
}
