"""Tool calls the way vLLM serves them with `--enable-auto-tool-choice --tool-call-parser X`.

The model writes the call in its family's own format (vLLM's parsers: hermes_tool_parser.py
for Qwen's `<tool_call>` JSON, llama_tool_parser.py for Llama 3's bare JSON with
`parameters`, mistral_tool_parser.py for `[TOOL_CALLS] [...]`); those tokens are generated
and counted like any text; the server then returns the parsed calls: `arguments` is
`json.dumps(arguments, ensure_ascii=False)` of the generated object. Streamed, each call's
first delta carries index, id, type and function name, and later deltas carry the argument
JSON piece by piece as its tokens are generated (no chunk while a marker or the name is
incomplete). finish_reason is "tool_calls" for auto and required, "stop" for a named
tool_choice (serving_chat.py: OpenAI's own behaviour). The message's content is null beside
the calls for auto and required, "" for a named tool_choice.

With tool_choice "auto" the simulated model calls a tool as a real one usually does: when
the last message is the user's and asks for something a tool provides (it names a word of
the tool's name: "weather" for get_weather), it calls that tool; after a tool result, or
for a question no tool answers, it writes prose. `sim.tool_calls: N` forces N calls.
"""

from __future__ import annotations

import json
import os
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpusim.text import WORDS

_ID_CHARS = string.ascii_letters + string.digits
# Words of a tool's name too generic to say what it provides.
_GENERIC_WORDS = frozenset(
    {"get", "set", "fetch", "list", "find", "make", "create", "call", "tool", "run", "the",
     "for", "and", "with", "current", "lookup", "query", "search", "api", "info", "data"}
)  # fmt: skip


@dataclass(frozen=True)
class PlannedCall:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class CallSpan:
    """Where one call's name and argument JSON sit in the generated text."""

    id: str
    name: str
    arguments: str
    name_end: int  # the text must reach here before the name is sent
    args_start: int
    args_end: int


@dataclass(frozen=True)
class ToolText:
    text: str
    calls: tuple[CallSpan, ...]


def parser_for(model_name: str) -> str:
    """The vLLM --tool-call-parser a deployment of this family uses."""
    name = model_name.lower()
    if "mistral" in name:
        return "mistral"
    if "llama" in name:
        return "llama3_json"
    return "hermes"


def _call_id(parser: str) -> str:
    if parser == "mistral":  # MistralToolCall.generate_random_id: 9 alphanumerics
        raw = os.urandom(9)
        return "".join(_ID_CHARS[b % len(_ID_CHARS)] for b in raw)
    return "chatcmpl-tool-" + os.urandom(16).hex()


def _value(schema: Any, seed: int, position: int) -> Any:
    kind = schema.get("type") if isinstance(schema, Mapping) else None
    if isinstance(schema, Mapping) and isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if kind == "integer":
        return 3 + (seed + position) % 17
    if kind == "number":
        return 1.5 + (seed + position) % 9
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return arguments_for(schema, seed)
    return WORDS[(seed * 7 + position * 13) % len(WORDS)].strip(".,;:—")


def arguments_for(parameters: Any, seed: int) -> dict[str, Any]:
    """A deterministic object for a JSON schema: every declared property, with a value of
    its type (first enum value, a word for strings)."""
    if not isinstance(parameters, Mapping):
        return {}
    properties = parameters.get("properties")
    if not isinstance(properties, Mapping):
        return {}
    return {k: _value(v, seed, i) for i, (k, v) in enumerate(properties.items())}


def _function(tool: Any) -> Mapping[str, Any]:
    function = tool.get("function") if isinstance(tool, Mapping) else None
    return function if isinstance(function, Mapping) else {}


def plan_calls(tools: Sequence[Any], tool_choice: Any, count: int, seed: int) -> list[PlannedCall]:
    """Which functions the model calls: the named one, else the first `count` tools."""
    by_name = {_function(t).get("name"): _function(t) for t in tools}
    if isinstance(tool_choice, Mapping):
        name = _function(tool_choice).get("name")
        chosen = [by_name[name]] if name in by_name else []
    else:
        functions = [_function(t) for t in tools]
        chosen = [functions[i % len(functions)] for i in range(count)] if functions else []
    return [
        PlannedCall(name=str(f.get("name")), arguments=arguments_for(f.get("parameters"), seed + i))
        for i, f in enumerate(chosen)
    ]


def _json_object(call: PlannedCall, key: str) -> tuple[str, int, int, int]:
    """`{"name": ..., key: {...}}` and the offsets of the name's end and the arguments."""
    head = '{"name": ' + json.dumps(call.name, ensure_ascii=False)
    arguments = json.dumps(call.arguments, ensure_ascii=False)
    prefix = head + f', "{key}": '
    text = prefix + arguments + "}"
    return text, len(head), len(prefix), len(prefix) + len(arguments)


def render_calls(calls: Sequence[PlannedCall], parser: str) -> ToolText:
    """The text the model generates for these calls, in its family's format."""
    key = "parameters" if parser == "llama3_json" else "arguments"
    if parser == "hermes":
        opener, closer, separator, start = "<tool_call>\n", "\n</tool_call>", "\n", ""
    elif parser == "mistral":
        opener, closer, separator, start = "", "", ", ", "[TOOL_CALLS] ["
    else:
        opener, closer, separator, start = "", "", "; ", ""
    text = start
    spans = []
    for i, call in enumerate(calls):
        if i:
            text += separator
        text += opener
        body, name_end, args_start, args_end = _json_object(call, key)
        base = len(text)
        spans.append(
            CallSpan(
                id=_call_id(parser),
                name=call.name,
                arguments=json.dumps(call.arguments, ensure_ascii=False),
                name_end=base + name_end,
                args_start=base + args_start,
                args_end=base + args_end,
            )
        )
        text += body + closer
    if parser == "mistral":
        text += "]"
    return ToolText(text=text, calls=tuple(spans))


def stream_deltas(tool_text: ToolText, steps: Sequence[str]) -> list[dict[str, Any] | None]:
    """Per generated token, the delta vLLM's streaming parser sends (None: no chunk)."""
    out: list[dict[str, Any] | None] = []
    seen = 0
    named: set[int] = set()
    sent_args = [0] * len(tool_text.calls)
    for step in steps:
        seen += len(step)
        pieces = []
        for index, call in enumerate(tool_text.calls):
            if index not in named and seen >= call.name_end:
                named.add(index)
                pieces.append(
                    {
                        "index": index,
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name},
                    }
                )
            if index in named:
                upto = min(seen, call.args_end) - call.args_start
                if upto > sent_args[index]:
                    piece = call.arguments[sent_args[index] : upto]
                    sent_args[index] = upto
                    pieces.append({"index": index, "function": {"arguments": piece}})
        out.append({"tool_calls": pieces} if pieces else None)
    return out


def parsed_calls(tool_text: ToolText, generated: str) -> list[dict[str, Any]]:
    """The calls whose JSON was generated completely (a cut-off call is not returned)."""
    return [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments},
        }
        for call in tool_text.calls
        if len(generated) >= call.args_end
    ]


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


def _name_words(name: Any) -> set[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(name))
    words = {_stem(w) for w in re.findall(r"[a-z0-9]+", spaced.lower())}
    return {w for w in words if len(w) >= 3 and w not in _GENERIC_WORDS}


def _last_user_words(messages: Sequence[Any]) -> set[str]:
    """The words of the last message when it is the user's (none after a tool result)."""
    last = messages[-1] if messages else None
    if not isinstance(last, Mapping) or last.get("role") != "user":
        return set()
    content = last.get("content")
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, Mapping)]
        content = " ".join(p for p in parts if isinstance(p, str))
    if not isinstance(content, str):
        return set()
    return {_stem(w) for w in re.findall(r"[a-z0-9]+", content.lower())}


def asked_tools(tools: Any, messages: Sequence[Any]) -> list[Any]:
    """The tools whose name the last user message asks for, in the request's order."""
    if not isinstance(tools, Sequence):
        return []
    asked = _last_user_words(messages)
    return [t for t in tools if asked and _name_words(_function(t).get("name")) & asked]


def auto_calls(tools: Any, messages: Sequence[Any], forced: int) -> int:
    """How many calls tool_choice "auto" makes: `sim.tool_calls` when given, else one per
    tool the last user message asks for (at most one per tool), else none."""
    return forced or len(asked_tools(tools, messages))


def relevant_first(tools: Sequence[Any], messages: Sequence[Any]) -> list[Any]:
    """The tools with the asked-for ones first: those are the ones the model calls."""
    asked = asked_tools(tools, messages)
    return [*asked, *(t for t in tools if not any(t is a for a in asked))]


def wants_tool_call(tools: Any, tool_choice: Any, auto_calls: int) -> bool:
    if not tools or tool_choice == "none":
        return False
    if tool_choice == "required" or isinstance(tool_choice, Mapping):
        return True
    return auto_calls > 0
