"""The simulated guard model: Llama Guard 3's output format on the conversation's last
message, flagged by trigger words, counted with the real (Llama 3) tokenizer, as vLLM
serving Llama Guard 3 would report it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from devstack.guard import GUARD_FOLDER, LLAMA3_FOLDER, build_guard_tokenizer
from gpusim import SimConfig, create_app
from gpusim.__main__ import parse_args
from gpusim.guard import parse_triggers, verdict

from tests.support.servers import serve_asgi

TRIGGERS = (("detonate", "S9"), ("poison", "S1"), ("pipe bomb", "S9"), ("hate", "S10"))


def test_verdicts_name_the_triggers_of_the_last_message_in_order() -> None:
    def last(text: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": "poison"}, {"role": "assistant", "content": text}]

    assert verdict(last("All good."), TRIGGERS) == "\n\nsafe"
    assert verdict(last("I hate to detonate"), TRIGGERS) == "\n\nunsafe\nS9,S10"
    assert verdict(last("A PIPE BOMB and poison"), TRIGGERS) == "\n\nunsafe\nS1,S9"
    assert verdict(last("poisonous, detonated"), TRIGGERS) == "\n\nsafe"  # whole words only
    parts = [{"role": "user", "content": [{"type": "text", "text": "detonate"}]}]
    assert verdict(parts, TRIGGERS) == "\n\nunsafe\nS9"


def test_triggers_from_the_command_line() -> None:
    assert parse_triggers("detonate=S9, pipe bomb=S9,") == (("detonate", "S9"), ("pipe bomb", "S9"))
    with pytest.raises(ValueError):
        parse_triggers("detonate")
    args = parse_args(["--tokenizers-dir", "x", "--guard-models", "g", "--guard-triggers", "a=S1"])
    assert (args.guard_models, args.guard_triggers) == ("g", "a=S1")


@pytest.fixture(scope="module")
def guard_dir(tokenizers_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("guard")
    build_guard_tokenizer(tokenizers_dir / LLAMA3_FOLDER, root / GUARD_FOLDER)
    return root


@pytest.fixture(scope="module")
def guard_url(guard_dir: Path) -> Iterator[str]:
    config = SimConfig(
        tokenizers_dir=guard_dir, guard_models=(GUARD_FOLDER,), guard_triggers=TRIGGERS
    )
    with serve_asgi(create_app(config)) as url:
        yield url


def ask(url: str, content: str, **extra: Any) -> httpx.Response:
    body = {"model": GUARD_FOLDER, "messages": [{"role": "user", "content": content}], **extra}
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=60)


def test_the_guard_answers_in_llama_guards_format_counted_with_its_tokenizer(
    guard_url: str, guard_dir: Path
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(guard_dir / GUARD_FOLDER))
    for content, expected in (("Hi there", "\n\nsafe"), ("detonate it", "\n\nunsafe\nS9")):
        data = ask(guard_url, content).json()
        [choice] = data["choices"]
        assert choice["message"]["content"] == expected and choice["finish_reason"] == "stop"
        messages = [{"role": "user", "content": content}]
        prompt = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)
        answer = tokenizer.encode(expected, add_special_tokens=False)
        assert data["usage"]["prompt_tokens"] == len(prompt)
        assert data["usage"]["completion_tokens"] == len(answer) + 1  # and <|eot_id|>
    # Llama Guard 3's template refuses a conversation that does not alternate.
    bad = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    response = httpx.post(
        guard_url + "/v1/chat/completions", json={"model": GUARD_FOLDER, "messages": bad}
    )
    assert response.status_code == 400 and "alternate" in response.json()["error"]["message"]


def test_the_guard_streams_and_honours_max_tokens(guard_url: str) -> None:
    with httpx.stream(
        "POST",
        guard_url + "/v1/chat/completions",
        json={"model": GUARD_FOLDER, "stream": True, "max_tokens": 2,
              "messages": [{"role": "user", "content": "poison"}]},
    ) as response:  # fmt: skip
        lines = [line for line in response.iter_lines() if line.startswith("data: {")]
    text = "".join(
        c["choices"][0]["delta"].get("content") or ""
        for c in map(lambda line: httpx.Response(200, content=line[6:]).json(), lines)
        if c["choices"]
    )
    assert text == "\n\nunsafe" and '"finish_reason":"length"' in lines[-1].replace(" ", "")
