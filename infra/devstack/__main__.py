"""`make run`: the whole stack on this machine until Ctrl-C.

- DynamoDB: moto's server (devstack.dynamodb, patched by motofix) on
  127.0.0.1:$DYNAMODB_PORT (8001), tables from template.yaml
- the simulated GPU endpoint on 127.0.0.1:$SIM_PORT (8002)
- the gateway on 127.0.0.1:$PORT (8000)
then a demo key ($GATEWAY_DEMO_KEY sets its value), a curl line and the exports that point
the `gateway` CLI at this DynamoDB.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import EndpointConnectionError

from devstack.tables import LOCAL_TABLE_NAMES, TEMPLATE_PATH, create_tables

ROOT = TEMPLATE_PATH.parent
DEFAULT_TOKENIZERS = ROOT.parent / "shared" / "tokenizers"
LOCAL_AWS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def say(message: str) -> None:
    sys.stdout.write(f">> {message}\n")
    sys.stdout.flush()


def wait_healthy(url: str, process: subprocess.Popen[bytes] | None, name: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"{name} exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise SystemExit(f"{name} did not become healthy at {url}")


def wait_dynamodb(client: Any, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            client.list_tables()
            return
        except EndpointConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the local DynamoDB (moto) did not start") from None
            time.sleep(0.1)


def default_models(tokenizers_dir: Path, sim_url: str) -> str:
    models = []
    for folder in sorted(p for p in tokenizers_dir.iterdir() if (p / "tokenizer.json").is_file()):
        config = folder / "tokenizer_config.json"
        if not config.is_file() or "chat_template" not in json.loads(config.read_text()):
            continue  # a model without a chat template cannot serve chat completions
        models.append(
            {
                "id": folder.name,
                "tokenizer": folder.name,
                "upstream": {"type": "openai", "base_url": sim_url, "model": folder.name},
            }
        )
    embedder = tokenizers_dir / "qwen3"
    if (embedder / "tokenizer.json").is_file():
        # An embedding model (as vLLM --runner pooling or TEI would serve it) on the sim's
        # /v1/embeddings, counted with qwen3's tokenizer.
        models.append(
            {
                "id": "qwen3-embedding",
                "tokenizer": "qwen3",
                "upstream": {"type": "openai", "base_url": sim_url, "model": "qwen3"},
                "routes": ["embeddings"],
                "max_input_tokens": 8192,
                "max_batch_size": 32,
            }
        )
    return json.dumps({"models": models})


def main() -> int:
    port = int(os.environ.get("PORT", "8000"))
    dynamodb_port = int(os.environ.get("DYNAMODB_PORT", "8001"))
    sim_port = int(os.environ.get("SIM_PORT", "8002"))
    tokenizers_dir = Path(os.environ.get("TOKENIZERS_DIR", DEFAULT_TOKENIZERS)).resolve()
    if not tokenizers_dir.is_dir():
        raise SystemExit(
            f"no tokenizer files at {tokenizers_dir}: set TOKENIZERS_DIR to a directory of "
            "<model>/tokenizer.json folders (the repo expects ../shared/tokenizers)"
        )
    dynamodb_url = f"http://127.0.0.1:{dynamodb_port}"
    sim_url = f"http://127.0.0.1:{sim_port}"
    gateway_url = f"http://127.0.0.1:{port}"

    env = {**os.environ, **LOCAL_AWS, "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_url}
    os.environ.update({k: env[k] for k in (*LOCAL_AWS, "AWS_ENDPOINT_URL_DYNAMODB")})

    say(f"starting DynamoDB (moto) on {dynamodb_url}")
    db_cmd = [sys.executable, "-m", "devstack.dynamodb", "--port", str(dynamodb_port)]
    children: list[subprocess.Popen[bytes]] = [
        subprocess.Popen(db_cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ]
    try:
        client = boto3.client("dynamodb")
        wait_dynamodb(client, children[0])
        create_tables(client, template_path=TEMPLATE_PATH, names=LOCAL_TABLE_NAMES)
        say(f"created tables {', '.join(LOCAL_TABLE_NAMES.values())} from template.yaml")

        say(f"starting the simulated GPU endpoint on {sim_url}")
        sim_cmd = [sys.executable, "-m", "gpusim", "--host", "127.0.0.1", "--port", str(sim_port),
                   "--tokenizers-dir", str(tokenizers_dir)]  # fmt: skip
        children.append(subprocess.Popen(sim_cmd, env=env))
        wait_healthy(sim_url + "/health", children[-1], "gpusim")

        gateway_env = {
            **env,
            "KEYS_TABLE": LOCAL_TABLE_NAMES["KeysTable"],
            "USAGE_TABLE": LOCAL_TABLE_NAMES["UsageTable"],
            "TOKENIZERS_DIR": str(tokenizers_dir),
            "PRELOAD_TOKENIZERS": "true",
            "POWERTOOLS_METRICS_DISABLED": env.get("POWERTOOLS_METRICS_DISABLED", "true"),
        }
        if "MODELS_CONFIG" not in env and "MODELS_CONFIG_FILE" not in env:
            gateway_env["MODELS_CONFIG"] = default_models(tokenizers_dir, sim_url)
        models = [
            m["id"] for m in json.loads(gateway_env.get("MODELS_CONFIG", '{"models":[]}'))["models"]
        ]
        say(f"starting the gateway on {gateway_url} (models: {', '.join(models) or 'from config'})")
        gateway_cmd = [sys.executable, "-m", "uvicorn", "--factory", "gateway.app:create_app",
                       "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]  # fmt: skip
        children.append(subprocess.Popen(gateway_cmd, env=gateway_env))
        wait_healthy(gateway_url + "/health", children[-1], "gateway")

        from gateway.keys import KeyStore

        store = KeyStore(client=client, table=LOCAL_TABLE_NAMES["KeysTable"])
        demo = os.environ.get("GATEWAY_DEMO_KEY") or None
        key, secret = store.create(name="demo", owner="local", secret=demo)
        model = models[0] if models else "MODEL"
        body = json.dumps(
            {"model": model, "messages": [{"role": "user", "content": "Hello!"}], "stream": True}
        )
        sys.stdout.write(
            f"""
The stack is up. Ctrl-C stops it.

  demo key:  {secret}   (key_id {key.key_id})
  docs:      {gateway_url}/docs

Try it:
  curl -N {gateway_url}/v1/chat/completions \\
    -H "Authorization: Bearer {secret}" -H "Content-Type: application/json" \\
    -d '{body}'

Point the gateway CLI at this DynamoDB (in another shell):
  export AWS_ENDPOINT_URL_DYNAMODB={dynamodb_url} AWS_DEFAULT_REGION=us-east-1
  export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
  export KEYS_TABLE={LOCAL_TABLE_NAMES["KeysTable"]} USAGE_TABLE={LOCAL_TABLE_NAMES["UsageTable"]}
  .venv/bin/gateway usage --key-id {key.key_id}

"""
        )
        sys.stdout.flush()
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while all(c.poll() is None for c in children):
            time.sleep(0.5)
        say("a component exited; stopping")
        return 1
    except KeyboardInterrupt:
        say("stopping")
        return 0
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()


if __name__ == "__main__":
    raise SystemExit(main())
