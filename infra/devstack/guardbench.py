"""`make bench-guard`: what guardrails add to a stream, against the guard's own latency.

Separate processes on free 127.0.0.1 ports: moto (DynamoDB, tables from template.yaml, one
key), gpusim serving the model (qwen3: --tpot-ms per token, --completion-tokens), a second
gpusim serving the guard (Llama Guard 3's template and format, devstack/guard.py; its
answer takes --guard-ms), and the gateway, whose models config names the same upstream
model several times: without a policy, with input screening, and with output screening
at each window size. Streamed requests are sent one at a time (a bounded loop: --requests
per configuration, after one warm-up); the table gives p50 time to first token and to the
last byte, and the added time over the unscreened model. The guard's own latency is
measured directly on its endpoint. docs/GUARDRAILS.md discusses the figures.

    python -m devstack.guardbench [--requests 10] [--guard-ms 20] [--tpot-ms 5]
                                  [--completion-tokens 64] [--windows 8,32,128]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

from devstack.__main__ import DEFAULT_TOKENIZERS, LOCAL_AWS, wait_healthy
from devstack.bench.stack import local_tables
from devstack.guard import GUARD_FOLDER, LLAMA3_FOLDER, build_guard_tokenizer
from devstack.ports import free_ports
from devstack.tables import LOCAL_TABLE_NAMES

MODEL = "qwen3"
PROMPT = [{"role": "user", "content": "Tell me about the lighthouse keeper's morning."}]


@contextmanager
def process(cmd: list[str], env: dict[str, str], health: str) -> Iterator[None]:
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(health, child, cmd[2])
        yield
    finally:
        child.terminate()
        child.wait(timeout=10)


def models_config(sim: str, guard: str, windows: Sequence[int]) -> str:
    def model(model_id: str, url: str, folder: str, **extra: Any) -> dict[str, Any]:
        upstream = {"type": "openai", "base_url": url, "model": folder}
        return {"id": model_id, "tokenizer": folder, "upstream": upstream, **extra}

    names = ["plain", "input", *(f"output-{n}" for n in windows)]
    models = [model(name, sim, MODEL) for name in names]
    models.append(model("guard", guard, GUARD_FOLDER, guard={"format": "llama_guard"}))
    policies: list[dict[str, Any]] = [{"id": "input", "guard": "guard", "models": ["input"]}]
    policies += [
        {"id": f"output-{n}", "guard": "guard", "models": [f"output-{n}"], "input": False,
         "output": True, "window_tokens": n}
        for n in windows
    ]  # fmt: skip
    return json.dumps({"models": models, "guard_policies": policies})


def timed_stream(client: httpx.Client, url: str, body: dict[str, Any]) -> tuple[float, float]:
    """(time to the first content chunk, time to the end of the stream), in ms."""
    start = time.perf_counter()
    first: float | None = None
    with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if (
                first is None
                and '"content":"' in line.replace(" ", "")
                and '"content":""' not in line
            ):
                first = time.perf_counter()
    end = time.perf_counter()
    return ((first or end) - start) * 1000, (end - start) * 1000


def guard_latency(client: httpx.Client, guard_url: str, requests: int) -> float:
    body = {"model": GUARD_FOLDER, "messages": PROMPT, "max_tokens": 20}
    times = []
    for _ in range(requests + 1):
        start = time.perf_counter()
        client.post(guard_url + "/v1/chat/completions", json=body).raise_for_status()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times[1:])


def _key(moto_url: str) -> str:
    client = local_tables(moto_url)
    from gateway.keys import KeyStore

    store = KeyStore(client=client, table=LOCAL_TABLE_NAMES["KeysTable"])
    return store.create(name="guardbench", owner="bench")[1]


def run(args: argparse.Namespace, workdir: Path) -> str:
    tokenizers = workdir / "tokenizers"
    tokenizers.mkdir()
    (tokenizers / MODEL).symlink_to(args.tokenizers_dir.resolve() / MODEL)
    build_guard_tokenizer(args.tokenizers_dir / LLAMA3_FOLDER, tokenizers / GUARD_FOLDER)
    py, env = sys.executable, {**os.environ, **LOCAL_AWS}
    names = ("moto", "sim", "guard", "gateway")
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    sim = [py, "-m", "gpusim", "--tokenizers-dir", str(tokenizers), "--preload"]
    model_sim = [*sim, "--port", str(ports["sim"]), "--models", MODEL, "--tpot-ms",
                 str(args.tpot_ms), "--completion-tokens", str(args.completion_tokens)]  # fmt: skip
    guard_sim = [*sim, "--port", str(ports["guard"]), "--models", GUARD_FOLDER,
                 "--guard-models", GUARD_FOLDER, "--ttft-ms", str(args.guard_ms)]  # fmt: skip
    gateway = [py, "-m", "uvicorn", "--factory", "gateway.app:create_app", "--port",
               str(ports["gateway"]), "--no-access-log"]  # fmt: skip
    moto = [py, "-m", "devstack.dynamodb", "--port", str(ports["moto"])]
    with ExitStack() as stack:
        stack.enter_context(process(moto, env, url["moto"] + "/moto-api/data.json"))
        stack.enter_context(process(model_sim, env, url["sim"] + "/health"))
        stack.enter_context(process(guard_sim, env, url["guard"] + "/health"))
        secret = _key(url["moto"])
        gateway_env = {
            **env, "AWS_ENDPOINT_URL_DYNAMODB": url["moto"], "TOKENIZERS_DIR": str(tokenizers),
            "KEYS_TABLE": LOCAL_TABLE_NAMES["KeysTable"], "LOG_LEVEL": "WARNING",
            "USAGE_TABLE": LOCAL_TABLE_NAMES["UsageTable"], "PRELOAD_TOKENIZERS": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "MODELS_CONFIG": models_config(url["sim"], url["guard"], args.windows),
        }  # fmt: skip
        stack.enter_context(process(gateway, gateway_env, url["gateway"] + "/health"))
        with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {secret}"}) as http:
            return report(args, http, url)
    raise AssertionError("unreachable")


def report(args: argparse.Namespace, http: httpx.Client, url: dict[str, str]) -> str:
    guard_ms = guard_latency(http, url["guard"], args.requests)
    rows, base = [], (0.0, 0.0)
    for name in ["plain", "input", *(f"output-{n}" for n in args.windows)]:
        body = {"model": name, "messages": PROMPT, "stream": True}
        samples = [timed_stream(http, url["gateway"] + "/v1/chat/completions", body)
                   for _ in range(args.requests + 1)][1:]  # fmt: skip
        ttft = statistics.median(s[0] for s in samples)
        total = statistics.median(s[1] for s in samples)
        if name == "plain":
            base = (ttft, total)
        rows.append(f"| {name} | {ttft:.1f} | {ttft - base[0]:+.1f} | {total:.1f} | "
                    f"{total - base[1]:+.1f} |")  # fmt: skip
    header = (
        f"guard latency (its endpoint, direct, p50): {guard_ms:.1f} ms; model: "
        f"{args.completion_tokens} tokens at {args.tpot_ms} ms/token; "
        f"{args.requests} streamed requests per row, one at a time\n\n"
        "| model (policy) | TTFT p50 ms | added | total p50 ms | added |\n"
        "|---|---:|---:|---:|---:|"
    )
    return header + "\n" + "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="guardbench", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--guard-ms", type=float, default=20.0)
    parser.add_argument("--tpot-ms", type=float, default=5.0)
    parser.add_argument("--completion-tokens", type=int, default=64)
    parser.add_argument("--windows", type=lambda s: [int(n) for n in s.split(",") if n],
                        default=[8, 32, 128])  # fmt: skip
    parser.add_argument(
        "--tokenizers-dir", type=Path,
        default=Path(os.environ.get("TOKENIZERS_DIR") or DEFAULT_TOKENIZERS),
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 100:
        parser.error("--requests: 1 to 100 (a bounded benchmark)")
    with tempfile.TemporaryDirectory() as workdir:
        sys.stdout.write(run(args, Path(workdir)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
