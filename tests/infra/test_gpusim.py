"""The simulated GPU endpoint, over real HTTP (uvicorn in a thread)."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gpusim import SimConfig, create_app
from gpusim.__main__ import parse_args
from gpusim.generate import Limits, run_choice
from gpusim.models import Script, SimModel
from gpusim.text import WORDS, start_word
from tokenizers import Tokenizer

from tests.support.processes import stop
from tests.support.servers import free_port, serve_asgi

Json = dict[str, Any]
HELLO = [{"role": "user", "content": "Hello, world!"}]
CHAT = "/v1/chat/completions"


# ---------------------------------------------------------------------------- helpers


def _connection(base: str, timeout: float) -> http.client.HTTPConnection:
    url = urllib.parse.urlsplit(base)
    return http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout)


def request(
    base: str, method: str, path: str, body: Any = None, *, raw: bytes | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = _connection(base, 10)
    try:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn.request(method, path, body=data, headers={"content-type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def chat(base: str, body: Json) -> tuple[int, Json]:
    status, _, data = request(base, "POST", CHAT, body)
    return status, json.loads(data)


def ok(base: str, **body: Any) -> Json:
    status, data = chat(base, {"model": "qwen3", "messages": HELLO, **body})
    assert status == 200, data
    return data


def stream(base: str, body: Json) -> list[tuple[float, str]]:
    """POST a streamed request; return (arrival time, data payload) of every SSE event."""
    conn = _connection(base, 10)
    try:
        conn.request("POST", CHAT, body=json.dumps({**body, "stream": True}))
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = []
        for line in resp:
            if line.startswith(b"data: "):
                events.append((time.monotonic(), line[6:].strip().decode()))
        return events
    finally:
        conn.close()


def chunks(events: list[tuple[float, str]]) -> list[Json]:
    return [json.loads(data) for _, data in events if data != "[DONE]"]


def streamed_text(events: list[tuple[float, str]], index: int = 0) -> str:
    return "".join(
        c["choices"][0]["delta"].get("content", "")
        for c in chunks(events)
        if c["choices"] and c["choices"][0]["index"] == index
    )


def stats(base: str) -> Json:
    status, _, data = request(base, "GET", "/sim/stats")
    assert status == 200
    return dict(json.loads(data))


def wait_stats(base: str, **expected: int) -> Json:
    deadline = time.monotonic() + 5
    while True:
        current = stats(base)
        if all(current[k] == v for k, v in expected.items()):
            return current
        assert time.monotonic() < deadline, f"stats {current} never reached {expected}"
        time.sleep(0.02)


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def base(tokenizers_dir: Path) -> Iterator[str]:
    with serve_asgi(create_app(SimConfig(tokenizers_dir=tokenizers_dir))) as url:
        yield url


@pytest.fixture(scope="module")
def hf(tokenizers_dir: Path) -> dict[str, Tokenizer]:
    """The backend transformers 5's AutoTokenizer builds (what vLLM counts with), used on
    prompts rendered by hand, independent of gpusim's template rendering."""
    from transformers import AutoTokenizer

    names = ("qwen3", "llama-3-8b-instruct", "tinyllama-1.1b-chat-v1.0")
    return {
        n: AutoTokenizer.from_pretrained(str(tokenizers_dir / n)).backend_tokenizer for n in names
    }


# ---------------------------------------------------------------------------- discovery


def test_models_health_and_reset(base: str) -> None:
    status, _, data = request(base, "GET", "/v1/models")
    listing = json.loads(data)
    assert status == 200 and listing["object"] == "list"
    ids = {m["id"] for m in listing["data"]}
    assert {"qwen3", "llama-3-8b-instruct", "tinyllama-1.1b-chat-v1.0", "gpt2"} <= ids
    assert all(m["object"] == "model" and m["owned_by"] == "gpusim" for m in listing["data"])
    assert request(base, "GET", "/health")[2] == b'{"status":"ok"}'
    ok(base)
    assert stats(base)["requests"] >= 1
    status, _, data = request(base, "POST", "/sim/reset")
    assert status == 200
    assert json.loads(data) == {"requests": 0, "completed": 0, "cancelled": 0, "active": 0}


# ---------------------------------------------------------------------------- prompt tokens

SYSTEM_CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "line one\nline two"},
    {"role": "assistant", "content": "Sure."},
    {"role": "user", "content": "Again?"},
]
# The same conversation, rendered by hand from each model's documented chat format.
RENDERED = {
    "qwen3": (
        "<|im_start|>user\nHello, world!<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nline one\nline two<|im_end|>\n"
        "<|im_start|>assistant\nSure.<|im_end|>\n"
        "<|im_start|>user\nAgain?<|im_end|>\n<|im_start|>assistant\n",
    ),
    "llama-3-8b-instruct": (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello, world!<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nline one\nline two<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nSure.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nAgain?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
    ),
    "tinyllama-1.1b-chat-v1.0": (
        "<|user|>\nHello, world!</s>\n<|assistant|>\n",
        "<|system|>\nYou are terse.</s>\n<|user|>\nline one\nline two</s>\n"
        "<|assistant|>\nSure.</s>\n<|user|>\nAgain?</s>\n<|assistant|>\n",
    ),
}
# counted by hand: special tokens + role word + newlines + the 4 tokens of "Hello, world!".
# TinyLlama's config says `legacy: false`, so transformers 5 prepends "▁" only at the very
# start of the text, not after `</s>` (tokenizer.json alone would count 20).
HELLO_TOKENS = {"qwen3": 12, "llama-3-8b-instruct": 14, "tinyllama-1.1b-chat-v1.0": 19}


@pytest.mark.parametrize("model", sorted(RENDERED))
def test_prompt_tokens_match_an_independent_count(
    base: str, hf: dict[str, Tokenizer], model: str
) -> None:
    hello, conversation = RENDERED[model]
    count = len(hf[model].encode(hello, add_special_tokens=False).ids)
    assert count == HELLO_TOKENS[model]
    usage = ok(base, model=model)["usage"]
    assert usage["prompt_tokens"] == count
    assert usage["total_tokens"] == count + usage["completion_tokens"]

    expected = len(hf[model].encode(conversation, add_special_tokens=False).ids)
    assert ok(base, model=model, messages=SYSTEM_CONVERSATION)["usage"]["prompt_tokens"] == expected
    # text parts are joined with a newline before templating, as vLLM does
    parts = [{"type": "text", "text": "line one"}, {"type": "text", "text": "line two"}]
    as_parts = [*SYSTEM_CONVERSATION[:1], {"role": "user", "content": parts}]
    as_text = [*SYSTEM_CONVERSATION[:2]]
    assert (
        ok(base, model=model, messages=as_parts)["usage"]["prompt_tokens"]
        == ok(base, model=model, messages=as_text)["usage"]["prompt_tokens"]
    )


def test_llama3_prompt_has_one_bos(tokenizers_dir: Path) -> None:
    model = SimModel("llama-3-8b-instruct", tokenizers_dir / "llama-3-8b-instruct")
    ids = model.prompt_ids(HELLO)
    assert isinstance(ids, list) and all(isinstance(i, int) for i in ids)
    assert ids[0] == 128000 and ids.count(128000) == 1  # <|begin_of_text|>
    assert ids[-4:] == [128006, 78191, 128007, 271]  # assistant header + "\n\n"


def test_template_errors_are_400(base: str) -> None:
    status, body = chat(base, {"model": "gpt2", "messages": HELLO})
    assert status == 400
    assert body["error"]["type"] == "BadRequestError"
    assert "chat template" in body["error"]["message"]
    # a request-supplied template works for gpt2, as in vLLM
    template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    gpt2 = {"model": "gpt2", "messages": HELLO, "chat_template": template}
    status, body = chat(base, gpt2)
    assert status == 200 and body["usage"]["prompt_tokens"] == 5  # Hello , world ! \n
    # the Mistral template raises on a system message
    mistral = {"model": "mistral-7b-instruct-v0.1", "messages": SYSTEM_CONVERSATION}
    status, body = chat(base, mistral)
    assert status == 400 and "alternate" in body["error"]["message"]


# ---------------------------------------------------------------------------- completions


def test_natural_completion_and_max_tokens(base: str) -> None:
    full = ok(base)
    choice = full["choices"][0]
    assert full["id"].startswith("chatcmpl-") and full["object"] == "chat.completion"
    assert choice["message"] == {"role": "assistant", "content": choice["message"]["content"],
                                 "refusal": None}  # fmt: skip
    assert choice["finish_reason"] == "stop" and choice["logprobs"] is None
    assert full["usage"]["completion_tokens"] == 48

    capped = ok(base, max_tokens=5)
    assert capped["choices"][0]["finish_reason"] == "length"
    assert capped["usage"]["completion_tokens"] == 5
    assert choice["message"]["content"].startswith(capped["choices"][0]["message"]["content"])
    # max_completion_tokens wins over max_tokens
    assert ok(base, max_tokens=3, max_completion_tokens=7)["usage"]["completion_tokens"] == 7
    # the natural end (EOS) is the 10th token: a cap of 10 still ends with "stop"
    short = ok(base, max_tokens=10, sim={"completion_tokens": 10})
    assert short["choices"][0]["finish_reason"] == "stop"
    assert short["usage"]["completion_tokens"] == 10
    long = ok(base, max_tokens=300, ignore_eos=True)
    assert long["choices"][0]["finish_reason"] == "length"
    assert long["usage"]["completion_tokens"] == 300


def test_stop_string(base: str, hf: dict[str, Tokenizer]) -> None:
    text = ok(base)["choices"][0]["message"]["content"]
    word = " mug"
    cut = text.index(word)
    body = ok(base, stop=["no such words", word])
    choice = body["choices"][0]
    assert choice["message"]["content"] == text[:cut]
    assert choice["finish_reason"] == "stop" and choice["stop_reason"] == word
    # counted up to and including the token that completed the stop string
    ids = hf["qwen3"].encode(text, add_special_tokens=False).ids
    completing = next(k for k in range(1, len(ids)) if word in hf["qwen3"].decode(ids[:k]))
    assert body["usage"]["completion_tokens"] == completing
    # a string stop works too; streamed text never shows any part of the stop string
    events = stream(base, {"model": "qwen3", "messages": HELLO, "stop": word})
    assert streamed_text(events) == text[:cut]


def test_n_seed_and_choices(base: str) -> None:
    two = ok(base, n=2)
    assert [c["index"] for c in two["choices"]] == [0, 1]
    first, second = (c["message"]["content"] for c in two["choices"])
    assert first != second
    assert two["usage"]["completion_tokens"] == 96
    assert ok(base)["choices"][0]["message"]["content"] == first
    seeded = [ok(base, seed=s)["choices"][0]["message"]["content"] for s in (1, 2, 1)]
    assert seeded[0] != seeded[1] and seeded[0] == seeded[2] and seeded[0] != first


def test_stream_chunk_sequence(base: str) -> None:
    usage_on = {"include_usage": True}
    events = stream(
        base, {"model": "qwen3", "messages": HELLO, "seed": 4, "stream_options": usage_on}
    )
    assert events[-1][1] == "[DONE]"
    parsed = chunks(events)
    assert len({c["id"] for c in parsed}) == 1
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "qwen3" for c in parsed)
    assert parsed[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    *content, finish, final = parsed
    assert all(c["usage"] is None for c in [*content, finish])
    assert finish["choices"][0]["delta"] == {}
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert final["choices"] == []
    plain = ok(base, seed=4)
    assert final["usage"] == plain["usage"]
    assert streamed_text(events) == plain["choices"][0]["message"]["content"]
    # without include_usage there is no usage at all
    parsed = chunks(stream(base, {"model": "qwen3", "messages": HELLO, "max_tokens": 3}))
    assert all("usage" not in c for c in parsed)
    assert parsed[-1]["choices"][0]["finish_reason"] == "length"


def test_stream_n_2(base: str) -> None:
    events = stream(base, {"model": "qwen3", "messages": HELLO, "n": 2, "max_tokens": 6})
    plain = ok(base, n=2, max_tokens=6)
    for index in (0, 1):
        assert streamed_text(events, index) == plain["choices"][index]["message"]["content"]


def test_incomplete_utf8_is_held_back(base: str) -> None:
    # a whole paragraph: includes a CJK character split over several byte-level tokens
    body = {"model": "llama-3-8b-instruct", "messages": HELLO, "sim": {"completion_tokens": 400}}
    events = stream(base, body)
    texts = [c["choices"][0]["delta"].get("content") for c in chunks(events)]
    texts = [t for t in texts if t]
    assert "鰯" in "".join(texts)
    assert not any("\ufffd" in t for t in texts)
    assert len(texts) < 399  # tokens that end in a partial character send nothing


def test_delays_are_honoured(base: str) -> None:
    sim = {"ttft_ms": 100, "tpot_ms": 50, "completion_tokens": 6}
    started = time.monotonic()
    events = stream(base, {"model": "qwen3", "messages": HELLO, "sim": sim})
    content = [t for t, data in events if '"content":"' in data and '"role"' not in data]
    assert content[0] - started >= 0.09
    assert events[-1][0] - content[0] >= 0.2  # 5 more tokens at 50 ms; ideal 0.25 s
    started = time.monotonic()
    ok(base, sim={"ttft_ms": 150})
    assert time.monotonic() - started >= 0.14


# ---------------------------------------------------------------------------- faults


def test_fail_status(base: str) -> None:
    status, headers, data = request(
        base, "POST", CHAT, {"model": "qwen3", "messages": HELLO,
                             "sim": {"fail_status": 429, "retry_after": 2}}
    )  # fmt: skip
    assert status == 429 and headers["retry-after"] == "2"
    error = json.loads(data)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "RateLimitError" and error["code"] == 429
    status, body = chat(base, {"model": "qwen3", "messages": HELLO, "sim": {"fail_status": 503}})
    assert status == 503 and body["error"]["code"] == 503


def test_fail_after_tokens(base: str) -> None:
    request_body = {"model": "qwen3", "messages": HELLO, "sim": {"fail_after_tokens": 3}}
    events = stream(base, request_body)
    assert all(data != "[DONE]" for _, data in events)
    *parsed, error = chunks(events)
    assert error["error"]["code"] == 500 and error["error"]["type"] == "InternalServerError"
    assert sum(1 for c in parsed if "content" in c["choices"][0]["delta"]) == 4  # role + 3
    assert all(c["choices"][0]["finish_reason"] is None for c in parsed)
    status, body = chat(base, request_body)
    assert status == 500 and body["error"]["code"] == 500


def test_omit_usage(base: str) -> None:
    assert "usage" not in ok(base, sim={"omit_usage": True})
    body = {"model": "qwen3", "messages": HELLO, "stream_options": {"include_usage": True}}
    parsed = chunks(stream(base, {**body, "sim": {"omit_usage": True}}))
    assert all("usage" not in c and c["choices"] for c in parsed)


def test_request_errors(base: str) -> None:
    status, _, data = request(base, "POST", CHAT, raw=b"{not json")
    assert status == 400 and json.loads(data)["error"]["code"] == 400
    status, body = chat(base, {"model": "qwen3"})
    assert status == 400 and body["error"]["param"] == "messages"
    status, body = chat(base, {"model": "x", "messages": HELLO})
    assert status == 404
    assert body == {
        "error": {
            "message": "The model `x` does not exist.",
            "type": "NotFoundError",
            "param": "model",
            "code": 404,
        }
    }
    status, body = chat(base, {"model": "qwen3", "messages": HELLO, "stream_options": {}})
    assert status == 400


# ---------------------------------------------------------------------------- disconnects


def test_client_disconnect_cancels_the_stream(base: str) -> None:
    request(base, "POST", "/sim/reset")
    body = json.dumps(
        {"model": "qwen3", "messages": HELLO, "stream": True,
         "sim": {"tpot_ms": 50, "completion_tokens": 200}}
    ).encode()  # fmt: skip
    url = urllib.parse.urlsplit(base)
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        head = f"POST {CHAT} HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n"
        sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        received = b""
        while received.count(b"data: ") < 3:
            data = sock.recv(65536)
            assert data, "stream ended early"
            received += data
        assert wait_stats(base, active=1)["cancelled"] == 0
    final = wait_stats(base, cancelled=1, active=0)
    assert final["completed"] == 0 and final["requests"] == 1


def test_hang_until_the_client_gives_up(base: str) -> None:
    request(base, "POST", "/sim/reset")
    conn = _connection(base, 0.3)
    body = json.dumps({"model": "qwen3", "messages": HELLO, "sim": {"hang": True}})
    conn.request("POST", CHAT, body=body)
    with pytest.raises(TimeoutError):
        conn.getresponse()
    conn.close()
    assert wait_stats(base, cancelled=1, active=0)["completed"] == 0


# ---------------------------------------------------------------------------- conformance


def test_responses_match_openai_schemas(base: str, conformance_schemas: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    document = json.loads(conformance_schemas.read_text())

    def check(name: str, instance: Any) -> None:
        schema = {**document, "$ref": f"#/$defs/{name}"}
        jsonschema.validators.validator_for(schema)(schema).validate(instance)

    check("CreateChatCompletionResponse", ok(base, n=2, stop="the"))
    body = {"model": "qwen3", "messages": HELLO, "stream_options": {"include_usage": True}}
    for chunk in chunks(stream(base, body)):
        check("CreateChatCompletionStreamResponse", chunk)
    check("ListModelsResponse", json.loads(request(base, "GET", "/v1/models")[2]))
    # not ErrorResponse: vLLM's error "code" is the HTTP status as an integer, where OpenAI's
    # schema has a string or null; the simulator keeps vLLM's shape


# ---------------------------------------------------------------------------- units


def test_text_starts_differ() -> None:
    starts = {start_word(seed, 0) for seed in range(len(WORDS))}
    assert len(starts) == len(WORDS)
    assert len({start_word(0, choice) for choice in range(len(WORDS))}) == len(WORDS)


@pytest.mark.parametrize(
    "model", ["qwen3", "llama-3-8b-instruct", "mistral-7b-instruct-v0.1", "gpt2"]
)
def test_longer_scripts_extend_shorter_ones(tokenizers_dir: Path, model: str) -> None:
    sim_model = SimModel(model, tokenizers_dir / model)
    short = sim_model.script(7, 1, 10)
    long = sim_model.script(7, 1, len(short.ids) + 1)
    assert len(long.ids) > len(short.ids)
    assert long.ids[: len(short.ids)] == short.ids
    assert long.deltas[: len(short.deltas)] == short.deltas


def test_stop_strings_are_held_back_while_streaming() -> None:
    script = Script(ids=tuple(range(6)), deltas=("ab", "c", "XY", "Zd", "e", "f"))
    result = run_choice(lambda n: script, Limits(natural_tokens=20, stop=("XYZ",)))
    assert result.content == "abc" and result.completion_tokens == 4
    # the last len("XYZ") - 1 characters are held back, so X and Y are never sent
    assert result.steps == ("", "a", "bc", "")
    assert (result.finish_reason, result.stop_reason) == ("stop", "XYZ")
    # min_tokens: stop strings are ignored until more than min_tokens tokens exist
    late = run_choice(lambda n: script, Limits(natural_tokens=6, stop=("c",), min_tokens=2))
    assert late.content == "abcXYZde" and late.completion_tokens == 6  # the 6th is EOS
    assert "".join(late.steps) == late.content and late.finish_reason == "stop"


# ---------------------------------------------------------------------------- CLI


def test_cli_defaults_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SIM_PORT", "9123")
    monkeypatch.setenv("SIM_TTFT_MS", "12.5")
    monkeypatch.setenv("SIM_TPOT_MS", "3")
    monkeypatch.setenv("TOKENIZERS_DIR", str(tmp_path))
    args = parse_args([])
    assert (args.port, args.ttft_ms, args.tpot_ms) == (9123, 12.5, 3.0)
    assert args.tokenizers_dir == tmp_path
    assert parse_args(["--port", "1", "--tpot-ms", "0"]).port == 1


def test_cli_serves(tokenizers_dir: Path) -> None:
    port = free_port()
    infra = str(Path(__file__).resolve().parents[2] / "infra")
    env = {**os.environ, "PYTHONPATH": infra + os.pathsep + os.environ.get("PYTHONPATH", "")}
    args = ["--port", str(port), "--tokenizers-dir", str(tokenizers_dir), "--models", "gpt2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpusim", *args], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line
        deadline = time.monotonic() + 10
        while True:
            try:
                status, _, data = request(f"http://127.0.0.1:{port}", "GET", "/v1/models")
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
        assert status == 200 and [m["id"] for m in json.loads(data)["data"]] == ["gpt2"]
    finally:
        stop(proc)
