"""Chat templates rendered the way HuggingFace transformers renders them.

Same jinja2 settings as `transformers.utils.chat_template_utils`: a sandboxed immutable
environment with `trim_blocks`, `lstrip_blocks`, loop controls, a `tojson` that does not
escape HTML, and the `raise_exception` and `strftime_now` globals.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NoReturn

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from gateway.tokens.errors import TemplateRefused


def _raise_exception(message: str) -> NoReturn:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    x: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class _GenerationTag(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` (used by training templates): renders its body."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body, lineno=lineno)


def _environment() -> jinja2.Environment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[_GenerationTag, jinja2.ext.loopcontrols],
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


class ChatTemplate:
    """One compiled chat template and the special tokens it is rendered with."""

    def __init__(self, source: str, special_tokens: dict[str, str]) -> None:
        self._template = _environment().from_string(source)
        self._special_tokens = special_tokens

    def render(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        add_generation_prompt: bool,
        tools: Sequence[dict[str, Any]] | None = None,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> str:
        """As transformers' apply_chat_template(messages, tools=tools, tokenize=False):
        `tools` are JSON-schema dicts, rendered by the template itself (None: no tools);
        `template_kwargs` (a request's chat_template_kwargs, e.g. Qwen3's enable_thinking)
        override the special tokens. The template's refusals (and kwargs named like a
        fixed argument) raise TemplateRefused."""
        fixed = {
            "messages": messages,
            "tools": list(tools) if tools else None,
            "documents": None,
            "add_generation_prompt": add_generation_prompt,
        }
        clashing = sorted(fixed.keys() & (template_kwargs or {}).keys())
        if clashing:
            raise TemplateRefused(f"chat_template_kwargs may not set {', '.join(clashing)}")
        try:
            return self._template.render(
                **fixed, **{**self._special_tokens, **(template_kwargs or {})}
            )
        except jinja2.exceptions.TemplateError as exc:
            raise TemplateRefused(str(exc) or type(exc).__name__) from exc
