"""`gateway tokens count`: the gateway's own prompt count for a request body (a bill audit).

    gateway tokens count --model M request.json      # or - for stdin

The model's tokenizer is found as the gateway finds it (MODELS_CONFIG*, TOKENIZERS_DIR, the
cache, the Hub); `--tokenizer` names a tokenizer folder or Hub repo directly instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from gateway.chat import prompt as chat_prompt
from gateway.chat.protocol import ChatCompletionRequest
from gateway.errors import ConfigurationError, GatewayError
from gateway.models.registry import ModelRegistry
from gateway.settings import Settings
from gateway.tokens.errors import TemplateRefused
from gateway.tokens.store import TokenizerStore


class TokensCliError(Exception):
    """Printed as one line, exit status 1."""


def add_parser(commands: Any) -> None:
    """Add `tokens count` to the `gateway` command's subparsers."""
    tokens = commands.add_parser("tokens", help="count tokens as the gateway bills them")
    actions = tokens.add_subparsers(dest="tokens_action", required=True)
    count = actions.add_parser(
        "count",
        help="the gateway's prompt_tokens for a chat request body (JSON file or -)",
        description="Prints the prompt_tokens the gateway counts for a /v1/chat/completions "
        "body, with the tokenizer, where its files came from and the loading rule applied.",
    )
    count.add_argument("file", help="request body JSON file, or - for stdin")
    count.add_argument("--model", help="model id in the models config (default: the body's)")
    count.add_argument("--tokenizer", help="a tokenizer folder name or Hub repo, not a model")
    count.add_argument("--json", action="store_true", help="print one JSON object")


def _body(path: str, stdin: TextIO) -> dict[str, Any]:
    try:
        text = stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        body = json.loads(text)
    except OSError as exc:
        raise TokensCliError(f"cannot read {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise TokensCliError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise TokensCliError(f"{path} must hold a JSON object (a chat completions body)")
    return body


def _tokenizer_spec(args: argparse.Namespace, body: dict[str, Any], settings: Settings) -> str:
    if args.tokenizer:
        return str(args.tokenizer)
    model_id = args.model or body.get("model")
    if not isinstance(model_id, str) or not model_id:
        raise TokensCliError("give --model (or --tokenizer), or a body with a 'model'")
    model = ModelRegistry.from_settings(settings).get(model_id)
    if model is None:
        raise TokensCliError(f"model {model_id!r} is not in the models config (MODELS_CONFIG*)")
    return model.tokenizer


def count(
    args: argparse.Namespace, *, settings: Settings, out: TextIO, stdin: TextIO | None = None
) -> int:
    body = _body(args.file, stdin or sys.stdin)
    spec = _tokenizer_spec(args, body, settings)
    body.setdefault("model", args.model or spec)
    try:
        request = ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise TokensCliError(f"invalid request body at {where}: {first['msg']}") from exc
    store = TokenizerStore(settings)
    try:
        tokenizer = store.get(spec)
        # the same messages and tools the chat service counts (gateway.chat.prompt)
        messages = chat_prompt.template_messages(request)
        prompt_tokens = tokenizer.count_chat(
            messages,
            chat_prompt.template_tools(request),
            template_kwargs=chat_prompt.template_kwargs(request),
        )
    except ConfigurationError as exc:
        raise TokensCliError(str(exc)) from exc
    except GatewayError as exc:  # what the gateway would answer with a 4xx
        raise TokensCliError(
            f"the gateway refuses this request ({exc.status_code}): {exc}"
        ) from exc
    except TemplateRefused as exc:
        raise TokensCliError(f"the chat template refuses this conversation (a 400): {exc}") from exc
    result = {
        "prompt_tokens": prompt_tokens,
        "tokenizer": spec,
        "source": store.source(spec),
        "tokenizer_class": tokenizer.tokenizer_class,
        "loading_rule": tokenizer.loading_rule,
    }
    if args.json:
        out.write(json.dumps(result) + "\n")
    else:
        out.write(f"prompt_tokens {prompt_tokens}\n")
        for name in ("tokenizer", "source", "tokenizer_class", "loading_rule"):
            out.write(f"{name:<16}{result[name]}\n")
    return 0
