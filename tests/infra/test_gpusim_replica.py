"""gpusim over HTTP as one vLLM replica: cached tokens in usage, the cache salt, the
max_model_len 400, priorities, queueing and /metrics (parsed with prometheus_client's own
parser)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gpusim import SimConfig, create_app
from gpusim.__main__ import parse_args
from prometheus_client.parser import text_string_to_metric_families

from tests.infra.test_gpusim import CHAT, HELLO, _connection, request, stream
from tests.support.servers import serve_asgi

Json = dict[str, Any]
# A conversation long enough for a few full blocks of 16 tokens.
SYSTEM = {"role": "system", "content": "You are a careful assistant. " * 12}


def fresh(tag: str) -> list[Json]:
    """A conversation no other test has sent (the server is shared): its first block differs."""
    return [{"role": "system", "content": f"[{tag}] " + SYSTEM["content"]},
            {"role": "user", "content": "What is a lighthouse for?"}]  # fmt: skip


def post(base: str, path: str, body: Json) -> tuple[int, Json]:
    status, _, data = request(base, "POST", path, body)
    return status, json.loads(data)


def metrics(base: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """{sample name: {labels: value}}, read with prometheus_client's parser."""
    status, headers, data = request(base, "GET", "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(data.decode()):
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            out.setdefault(sample.name, {})[key] = sample.value
    return out


def qwen3(values: dict[tuple[tuple[str, str], ...], float], **extra: str) -> float:
    labels = tuple(sorted({"model_name": "qwen3", "engine": "0", **extra}.items()))
    return values[labels]


@pytest.fixture(scope="module")
def base(tokenizers_dir: Path) -> Iterator[str]:
    config = SimConfig(
        tokenizers_dir=tokenizers_dir,
        models=("qwen3", "tinyllama-1.1b-chat-v1.0"),
        enable_prompt_tokens_details=True,
        model_max_len=(("qwen3", 256),),
        prefix_hash_seed="0",
    )
    with serve_asgi(create_app(config)) as url:
        yield url


def test_cached_tokens_on_a_repeated_prefix(base: str) -> None:
    conversation = fresh("repeat")
    first = post(base, CHAT, {"model": "qwen3", "messages": conversation})[1]["usage"]
    assert "prompt_tokens_details" not in first  # vLLM leaves it out when nothing was cached
    second = post(base, CHAT, {"model": "qwen3", "messages": conversation})[1]["usage"]
    prompt = second["prompt_tokens"]
    assert prompt == first["prompt_tokens"] > 32
    assert second["prompt_tokens_details"] == {"cached_tokens": (prompt - 1) // 16 * 16}
    # a next turn shares the leading blocks, streamed or not
    turn = [*conversation, {"role": "user", "content": "And who keeps it?"}]
    events = stream(base, {"model": "qwen3", "messages": turn,
                           "stream_options": {"include_usage": True}})  # fmt: skip
    usage = json.loads(events[-2][1])["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] >= prompt // 16 * 16 - 16


def test_cache_salt_isolates_tenants(base: str) -> None:
    conversation = fresh("salt")

    def cached(salt: str | None) -> int:
        body: Json = {"model": "qwen3", "messages": conversation}
        if salt is not None:
            body["cache_salt"] = salt
        usage = post(base, CHAT, body)[1]["usage"]
        return int(usage.get("prompt_tokens_details", {}).get("cached_tokens", 0))

    assert cached("tenant-a") == 0
    assert cached("tenant-b") == 0  # same prompt, another salt: not one block shared
    assert cached(None) == 0
    assert cached("tenant-a") > 0  # the same salt shares
    status, error = post(base, CHAT, {"model": "qwen3", "messages": HELLO, "cache_salt": ""})
    assert status == 400
    assert error["error"]["message"] == (
        "Parameter 'cache_salt' must be a non-empty string if provided."
    )


def test_max_model_len_is_refused_with_vllms_400(base: str) -> None:
    status, body = post(base, CHAT, {"model": "qwen3", "messages": HELLO, "max_tokens": 300})
    assert status == 400
    prompt = post(base, CHAT, {"model": "qwen3", "messages": HELLO})[1]["usage"]["prompt_tokens"]
    assert body["error"] == {
        "message": (
            "This model's maximum context length is 256 tokens. However, you requested 300 "
            f"output tokens and your prompt contains at least {prompt} input tokens, for a "
            f"total of at least {prompt + 300} tokens. Please reduce the length of the input "
            "prompt or the number of requested output tokens. "
            f"(parameter=input_tokens, value={prompt})"
        ),
        "type": "BadRequestError",
        "param": "input_tokens",
        "code": 400,
    }
    # a prompt over the context, no max_tokens: vLLM tokenizes at most max_model_len + 1
    long = [{"role": "user", "content": "lighthouse " * 400}]
    status, body = post(base, CHAT, {"model": "qwen3", "messages": long})
    assert status == 400
    assert (
        "requested 0 output tokens and your prompt contains at least 257 input tokens"
        in (body["error"]["message"])
    )
    status, body = post(base, "/v1/completions", {"model": "qwen3", "prompt": "lighthouse " * 400})
    assert status == 400
    assert body["error"]["param"] == "input_tokens"
    # another model has no limit
    other = {"model": "tinyllama-1.1b-chat-v1.0", "messages": long, "max_tokens": 300}
    assert post(base, CHAT, other)[0] == 200


def test_without_max_tokens_the_generation_fits_the_context(base: str) -> None:
    # vLLM's default max_tokens is what the context has left
    prompt = post(base, CHAT, {"model": "qwen3", "messages": HELLO})[1]["usage"]["prompt_tokens"]
    body = {"model": "qwen3", "messages": HELLO, "sim": {"completion_tokens": 1000}}
    status, data = post(base, CHAT, body)
    assert status == 200
    assert data["usage"]["completion_tokens"] == 256 - prompt
    assert data["choices"][0]["finish_reason"] == "length"


def test_priority_needs_priority_scheduling(base: str) -> None:
    status, body = post(base, CHAT, {"model": "qwen3", "messages": HELLO, "priority": 2})
    assert status == 400
    assert body["error"]["message"] == "Got priority 2 but Priority scheduling is not enabled."
    assert post(base, CHAT, {"model": "qwen3", "messages": HELLO, "priority": 0})[0] == 200


def test_metrics_in_prometheus_text(base: str) -> None:
    before = metrics(base)
    conversation = fresh("metrics")
    first = post(base, CHAT, {"model": "qwen3", "messages": conversation})[1]["usage"]
    second = post(base, CHAT, {"model": "qwen3", "messages": conversation})[1]["usage"]
    after = metrics(base)
    queries = "vllm:prefix_cache_queries_total"
    hits = "vllm:prefix_cache_hits_total"
    ttft = "vllm:time_to_first_token_seconds_count"
    assert qwen3(after[queries]) - qwen3(before[queries]) == 2 * first["prompt_tokens"]
    cached = second["prompt_tokens_details"]["cached_tokens"]
    assert qwen3(after[hits]) - qwen3(before[hits]) == cached
    assert qwen3(after[ttft]) - qwen3(before[ttft]) == 2
    assert qwen3(after["vllm:num_requests_running"]) == 0
    assert qwen3(after["vllm:num_requests_waiting"]) == 0
    # finished sequences' blocks are free (still cached, evictable), as in vLLM
    assert qwen3(after["vllm:kv_cache_usage_perc"]) == 0
    assert "vllm:time_to_first_token_seconds_bucket" in after
    # every model has its own series
    tiny = (("engine", "0"), ("model_name", "tinyllama-1.1b-chat-v1.0"))
    assert tiny in after["vllm:num_requests_running"]


def _wait_metric(base: str, name: str, value: float) -> None:
    deadline = time.monotonic() + 10
    while qwen3(metrics(base)[name]) != value:
        assert time.monotonic() < deadline, f"{name} never reached {value}"
        time.sleep(0.02)


def test_requests_wait_when_max_num_seqs_are_running(tokenizers_dir: Path) -> None:
    config = SimConfig(tokenizers_dir=tokenizers_dir, models=("qwen3",), max_num_seqs=2)
    with serve_asgi(create_app(config)) as base:
        hung = []
        for _ in range(3):  # two run (and hang), the third waits for a place
            conn = _connection(base, 10)
            conn.request("POST", CHAT, body=json.dumps(
                {"model": "qwen3", "messages": HELLO, "sim": {"hang": True}}))  # fmt: skip
            hung.append(conn)
        _wait_metric(base, "vllm:num_requests_running", 2)
        _wait_metric(base, "vllm:num_requests_waiting", 1)
        assert qwen3(metrics(base)["vllm:kv_cache_usage_perc"]) > 0
        hung[0].close()  # a client leaves: its place goes to the waiting request
        _wait_metric(base, "vllm:num_requests_waiting", 0)
        _wait_metric(base, "vllm:num_requests_running", 2)
        for conn in hung[1:]:
            conn.close()
        _wait_metric(base, "vllm:num_requests_running", 0)
        assert post(base, CHAT, {"model": "qwen3", "messages": HELLO})[0] == 200


def test_cli_engine_flags_have_vllms_defaults(tmp_path: Path) -> None:
    args = parse_args(["--tokenizers-dir", str(tmp_path)])
    assert (args.max_num_seqs, args.block_size, args.scheduling_policy) == (256, 16, "fcfs")
    assert args.enable_prefix_caching is True
    assert args.enable_prompt_tokens_details is False
    args = parse_args([
        "--tokenizers-dir", str(tmp_path), "--max-model-len", "4096,qwen3=40960",
        "--scheduling-policy", "priority", "--num-gpu-blocks-override", "512",
        "--no-enable-prefix-caching", "--enable-prompt-tokens-details",
    ])  # fmt: skip
    assert args.max_model_len == "4096,qwen3=40960"
    assert (args.num_gpu_blocks, args.enable_prefix_caching) == (512, False)
    assert args.enable_prompt_tokens_details is True
