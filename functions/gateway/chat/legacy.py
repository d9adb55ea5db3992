"""Request shapes OpenAI still accepts but model servers may not: mapped to current ones.

- `developer` messages (OpenAI's successor to `system`) become `system`, which every chat
  template and model server understands.
- The deprecated `functions` / `function_call` pair becomes `tools` / `tool_choice`;
  assistant messages' `function_call` becomes a one-element `tool_calls`, and the `function`
  messages answering them become `tool` messages carrying the matching `tool_call_id`.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import PydanticCustomError


def _error(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message)


def _map_messages(messages: list[Any]) -> list[Any]:
    mapped: list[Any] = []
    last_call_id: str | None = None
    for position, message in enumerate(messages):
        if not isinstance(message, dict):
            mapped.append(message)
            continue
        role = message.get("role")
        if role == "developer":
            message = {**message, "role": "system"}
        elif role == "assistant" and message.get("function_call") is not None:
            call = message["function_call"]
            last_call_id = f"call_{position}"
            message = {k: v for k, v in message.items() if k != "function_call"}
            message["tool_calls"] = [{"id": last_call_id, "type": "function", "function": call}]
        elif role == "function":
            call_id = last_call_id or f"call_{position}"
            message = {k: v for k, v in message.items() if k not in ("role", "name", "content")}
            message.update(
                role="tool", tool_call_id=call_id, content=messages[position].get("content") or ""
            )
        mapped.append(message)
    return mapped


def _map_function_call(value: Any) -> Any:
    if isinstance(value, dict) and "name" in value:
        return {"type": "function", "function": {"name": value["name"]}}
    return value  # "none" / "auto" (anything else fails tool_choice's validation)


def map_legacy_request(data: Any) -> Any:
    """The request body with legacy shapes replaced (a new dict; the input is not changed)."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    if isinstance(out.get("messages"), list):
        out["messages"] = _map_messages(out["messages"])
    functions = out.pop("functions", None)
    if functions is not None:
        if out.get("tools") is not None:
            raise _error("functions", "Give either tools or the deprecated functions, not both.")
        if not isinstance(functions, list):
            raise _error("functions", "functions must be an array.")
        out["tools"] = [{"type": "function", "function": f} for f in functions]
    function_call = out.pop("function_call", None)
    if function_call is not None:
        if out.get("tool_choice") is not None:
            raise _error(
                "function_call",
                "Give either tool_choice or the deprecated function_call, not both.",
            )
        out["tool_choice"] = _map_function_call(function_call)
    return out


def check_tool_choice(tools: list[Any] | None, tool_choice: Any) -> None:
    """tool_choice other than "none" needs tools; a named one must name one of them."""
    if tool_choice is None or tool_choice == "none":
        return
    if not tools:
        raise _error("tool_choice", "tool_choice is only allowed when tools are specified.")
    if isinstance(tool_choice, str):
        return
    name = tool_choice.function.name
    if name not in {tool.function.name for tool in tools}:
        raise PydanticCustomError(
            "tool_choice",
            "tool_choice names the function '{name}', which is not among the tools.",
            {"name": name},
        )
