"""CPU per signed usage PutItem (gateway.dynamodb_http), two checkouts side by side.

    python -m devstack.bench.signing --base /tmp/wt-base/functions [--calls 2000] [--rounds 3]

For each round and each checkout (`--base`, then this one's functions/, alternated so that
machine noise hits both), a fresh child process imports that checkout's gateway, builds
`DynamoDBHttp(endpoint=AwsClients().dynamodb_endpoint, ...)` as resources.py does, and sends
`--calls` sequential PutItems (after a warm-up) to the bench's DynamoDB stand-in
(instantdb.py, its own process, answering at once) on uvloop, as the gateway runs. Its CPU
(process time: signing, JSON, aiohttp, the loop) divided by the calls is the figure; the
stand-in's CPU is not counted. The table ends with new / base per round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from devstack.__main__ import LOCAL_AWS, wait_healthy
from devstack.bench.config import say
from devstack.ports import free_port

INFRA = Path(__file__).resolve().parents[2]
FUNCTIONS = INFRA.parent / "functions"
WARMUP = 200


async def _put_items(calls: int) -> float:
    """Child: CPU seconds per PutItem over `calls` sequential calls, after a warm-up, to the
    endpoint the environment names (AWS_ENDPOINT_URL_DYNAMODB, as in the Lambda)."""
    from gateway.aws import AwsClients
    from gateway.dynamodb_http import DynamoDBHttp

    aws = AwsClients(region_name=LOCAL_AWS["AWS_REGION"])
    http = DynamoDBHttp(endpoint=aws.dynamodb_endpoint, connect_timeout=2, read_timeout=5)
    item = {
        "pk": {"S": "key#bench"},
        "sk": {"S": "req#2026-12-06T22:00:00.000Z#r"},
        "model": {"S": "qwen3"},
        "prompt_tokens": {"N": "25"},
        "completion_tokens": {"N": "50"},
        "status": {"S": "completed"},
    }
    try:
        for _ in range(WARMUP):
            await http.put_item(table="usage", item=item, condition="attribute_not_exists(pk)")
        started = time.process_time()
        for _ in range(calls):
            await http.put_item(table="usage", item=item, condition="attribute_not_exists(pk)")
        return (time.process_time() - started) / calls
    finally:
        await http.reset()


def _child(calls: int) -> None:
    import uvloop

    cpu = uvloop.run(_put_items(calls))
    sys.stdout.write(json.dumps({"cpu_us": cpu * 1e6}) + "\n")


def _measure(functions: Path, url: str, calls: int) -> float:
    env = {
        **os.environ,
        **LOCAL_AWS,
        "AWS_ENDPOINT_URL_DYNAMODB": url,
        "PYTHONPATH": os.pathsep.join([str(functions), str(INFRA)]),
    }
    env.pop("AWS_ENDPOINT_URL", None)
    env.pop("AWS_PROFILE", None)
    out = subprocess.run(
        [sys.executable, "-m", "devstack.bench.signing", "--child", "--calls", str(calls)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    cpu_us: float = json.loads(out.strip().splitlines()[-1])["cpu_us"]
    return cpu_us


def run(base: Path, new: Path, *, calls: int, rounds: int) -> list[tuple[float, float]]:
    """(base, new) CPU microseconds per PutItem, one pair per round."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "devstack.bench", "--serve-instant-dynamodb", str(port),
           "--forward", "http://127.0.0.1:9"]  # fmt: skip  # PutItem only: nothing forwarded
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(new), str(INFRA)])}
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(url + "/", server, "the DynamoDB stand-in")
        pairs = []
        for n in range(rounds):
            pair = (_measure(base, url, calls), _measure(new, url, calls))
            say(f"round {n + 1}: base {pair[0]:.1f} us, new {pair[1]:.1f} us per PutItem")
            pairs.append(pair)
        return pairs
    finally:
        server.terminate()
        server.wait(10)


def render(pairs: Sequence[tuple[float, float]], *, calls: int) -> str:
    lines = [
        f"| round | base CPU us/PutItem | new CPU us/PutItem | new / base |  ({calls} calls, c=1)",
        "|---|---:|---:|---:|",
    ]
    for n, (base, new) in enumerate(pairs, 1):
        lines.append(f"| {n} | {base:.1f} | {new:.1f} | {new / base:.2f}x |")
    base_m = statistics.median(b for b, _ in pairs)
    new_m = statistics.median(n for _, n in pairs)
    lines.append(f"| median | {base_m:.1f} | {new_m:.1f} | {new_m / base_m:.2f}x |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.bench.signing", description=__doc__)
    parser.add_argument("--base", type=Path, help="the base checkout's functions/ directory")
    parser.add_argument("--new", type=Path, default=FUNCTIONS, help="default: this checkout's")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.calls)
        return 0
    if args.base is None:
        parser.error("--base is required")
    pairs = run(args.base.resolve(), args.new.resolve(), calls=args.calls, rounds=args.rounds)
    sys.stdout.write(render(pairs, calls=args.calls) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
