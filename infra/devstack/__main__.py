"""`make run`: the whole stack on this machine until Ctrl-C.

- DynamoDB: moto's server (devstack.dynamodb, patched by motofix) on
  127.0.0.1:$DYNAMODB_PORT (8001), tables from template.yaml
- the simulated GPU endpoint on 127.0.0.1:$SIM_PORT (8002), serving the tokenizers that
  devstack.tokenizers selects: a local folder, else public ones fetched from the Hub; and a
  second replica on $SIM2_PORT (8003): the first model is routed across both (README.md,
  "Routing across replicas"). Each model's max_model_len (devstack.tokenizers) is declared
  to the gateway's models config and to the replicas; each replica has a KV cache of 4,096
  blocks per model and reports cached tokens in usage
- the gateway on 127.0.0.1:$PORT (8000)
- the usage aggregator, as Lambda runs UsageAggregatorFunction: polls moto's stream of
  the usage table and calls its handler with stream events (devstack.streams); and the
  log subscription of UsageWritebackFunction: the gateway's `usage_record_unwritten`
  log lines go to the write-back handler
- the keys' MAC secrets (gateway.keys.mac): $KEY_MAC_SECRETS, or a fresh random one, in an
  SSM SecureString parameter of the same moto server (LOCAL_MAC_PARAMETER), which the
  gateway reads as it does when deployed
then a demo key ($GATEWAY_DEMO_KEY sets its value; by default a new MAC-format key), a curl
line and the exports that point the `gateway` CLI at this DynamoDB and parameter.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import EndpointConnectionError
from gateway.keys.mac import KeyMac, new_mac_secret
from gateway.keys.secret import MAC_PREFIX

from devstack.server import gateway_command
from devstack.streams import LogSubscription, StreamPoller
from devstack.tables import LOCAL_TABLE_NAMES, TEMPLATE_PATH, create_tables
from devstack.tokenizers import select, sim_args

ROOT = TEMPLATE_PATH.parent
DEFAULT_TOKENIZERS = ROOT.parent / "shared" / "tokenizers"
LOCAL_MAC_PARAMETER = "/gateway-devstack/key-mac-secrets"
LOCAL_AWS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def say(message: str) -> None:
    sys.stdout.write(f">> {message}\n")
    sys.stdout.flush()


def wait_healthy(
    url: str, process: subprocess.Popen[bytes] | None, name: str, *, seconds: float = 60
) -> None:
    deadline = time.monotonic() + seconds
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


def start_usage_functions(
    client: Any, dynamodb_url: str, gateway: subprocess.Popen[bytes], stop: threading.Event
) -> threading.Thread:
    """The aggregator's stream polling and the write-back's log subscription, in threads;
    returns the poller's thread (it ends once `stop` is set)."""
    os.environ.setdefault("USAGE_TABLE", LOCAL_TABLE_NAMES["UsageTable"])
    os.environ.setdefault("LOG_LEVEL", "WARNING")  # the handlers' own logs: problems only
    from gateway.lambdas.usage import aggregate_handler, writeback_handler

    poller = StreamPoller(
        dynamodb=client,
        streams=boto3.client("dynamodbstreams", endpoint_url=dynamodb_url),
        table=LOCAL_TABLE_NAMES["UsageTable"],
        handler=lambda event: aggregate_handler(event, None),
    )
    polling = threading.Thread(target=poller.run, args=(stop,), daemon=True)
    polling.start()
    subscription = LogSubscription(handler=lambda event: writeback_handler(event, None))

    def follow_logs() -> None:
        assert gateway.stdout is not None
        for raw in iter(gateway.stdout.readline, b""):
            line = raw.decode(errors="replace")
            sys.stdout.write(line)
            sys.stdout.flush()
            try:
                subscription.deliver([line])
            except Exception as exc:  # noqa: BLE001 - as Lambda would: retried later by hand
                say(f"write-back failed ({exc}); `gateway usage replay` can write it")

    threading.Thread(target=follow_logs, daemon=True).start()
    return polling


def put_mac_secrets(endpoint: str, secrets: str | None) -> KeyMac:
    """The keys' MAC secrets (`secrets`, else a new one) in moto's SSM at `endpoint`, as a
    SecureString parameter (LOCAL_MAC_PARAMETER)."""
    value = secrets or json.dumps([new_mac_secret()])
    mac = KeyMac.parse(value)  # refuses a bad list before the gateway would
    boto3.client("ssm", endpoint_url=endpoint).put_parameter(
        Name=LOCAL_MAC_PARAMETER, Type="SecureString", Value=value, Overwrite=True
    )
    return mac


def with_replicas(config: str, urls: list[str]) -> str:
    """The models config with its first model served by every replica in `urls`."""
    data = json.loads(config)
    if data["models"]:
        first = data["models"][0]
        upstream = first.pop("upstream")
        first["endpoints"] = [
            {**upstream, "name": f"replica-{n}", "base_url": url}
            for n, url in enumerate(urls, start=1)
        ]
    return json.dumps(data)


def start_replica(port: int, env: dict[str, str], args: list[str]) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "gpusim", "--host", "127.0.0.1", "--port", str(port), *args]
    process = subprocess.Popen(cmd, env=env, start_new_session=True)
    wait_healthy(f"http://127.0.0.1:{port}/health", process, "gpusim")
    return process


def stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    """Every child asked to stop (the last started first), then reaped: killed after 10 s."""
    for child in reversed(children):
        child.terminate()
    for child in children:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def stop_on_ctrl_c() -> None:
    """Ctrl-C stops the stack even where SIGINT was ignored when it started: a script's
    background job inherits SIG_IGN, and Python then leaves it so."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


def main() -> int:
    stop_on_ctrl_c()
    port = int(os.environ.get("PORT", "8000"))
    dynamodb_port = int(os.environ.get("DYNAMODB_PORT", "8001"))
    sim_port = int(os.environ.get("SIM_PORT", "8002"))
    selection = select(os.environ, default_dir=DEFAULT_TOKENIZERS, say=say)
    dynamodb_url = f"http://127.0.0.1:{dynamodb_port}"
    sim2_port = int(os.environ.get("SIM2_PORT", "8003"))
    sim_url = f"http://127.0.0.1:{sim_port}"
    sim2_url = f"http://127.0.0.1:{sim2_port}"
    gateway_url = f"http://127.0.0.1:{port}"

    env = {**os.environ, **LOCAL_AWS, "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_url}
    os.environ.update({k: env[k] for k in (*LOCAL_AWS, "AWS_ENDPOINT_URL_DYNAMODB")})

    say(f"starting DynamoDB (moto) on {dynamodb_url}")
    db_cmd = [sys.executable, "-m", "devstack.dynamodb", "--port", str(dynamodb_port)]
    children: list[subprocess.Popen[bytes]] = [
        subprocess.Popen(
            db_cmd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    ]
    stop_usage = threading.Event()
    polling: threading.Thread | None = None
    try:
        client = boto3.client("dynamodb")
        wait_dynamodb(client, children[0])
        create_tables(client, template_path=TEMPLATE_PATH, names=LOCAL_TABLE_NAMES)
        say(f"created tables {', '.join(LOCAL_TABLE_NAMES.values())} from template.yaml")
        mac = put_mac_secrets(dynamodb_url, env.get("KEY_MAC_SECRETS"))
        say(f"key MAC secrets (ids {', '.join(mac.ids)}) in SSM parameter {LOCAL_MAC_PARAMETER}")

        say(f"starting the simulated GPU endpoint on {sim_url} and a replica on {sim2_url}")
        children.append(start_replica(sim_port, env, sim_args(selection)))
        replica = start_replica(sim2_port, env, sim_args(selection))
        children.append(replica)

        gateway_env = {
            **env,
            "KEYS_TABLE": LOCAL_TABLE_NAMES["KeysTable"],
            "USAGE_TABLE": LOCAL_TABLE_NAMES["UsageTable"],
            **selection.gateway_env(),
            "PRELOAD_TOKENIZERS": "true",
            "AWS_ENDPOINT_URL_SSM": dynamodb_url,
            "KEY_MAC_SECRETS_PARAMETER": LOCAL_MAC_PARAMETER,
            "POWERTOOLS_METRICS_DISABLED": env.get("POWERTOOLS_METRICS_DISABLED", "true"),
        }
        gateway_env.pop("KEY_MAC_SECRETS", None)  # read from the parameter, as deployed
        if "MODELS_CONFIG" not in env and "MODELS_CONFIG_FILE" not in env:
            gateway_env["MODELS_CONFIG"] = with_replicas(
                selection.models_config(sim_url), [sim_url, sim2_url]
            )
            # A replica that stops answering is left after 3 s (README: routing).
            gateway_env.setdefault("UPSTREAM_FIRST_TOKEN_TIMEOUT", "3")
        models = [
            m["id"] for m in json.loads(gateway_env.get("MODELS_CONFIG", '{"models":[]}'))["models"]
        ]
        # The same config for the CLI (`gateway endpoints list` reads it).
        config_file = Path(tempfile.gettempdir()) / f"gateway-devstack-models-{port}.json"
        config_export = ""
        if "MODELS_CONFIG" in gateway_env:
            config_file.write_text(gateway_env["MODELS_CONFIG"])
            config_export = f"  export MODELS_CONFIG_FILE={config_file}\n"
        say(f"starting the gateway on {gateway_url} (models: {', '.join(models) or 'from config'})")
        gateway_cmd = gateway_command(port)  # with uvicorn's limits (devstack.server)
        children.append(
            subprocess.Popen(
                gateway_cmd, env=gateway_env, stdout=subprocess.PIPE, start_new_session=True
            )
        )
        polling = start_usage_functions(client, dynamodb_url, children[-1], stop_usage)
        say("usage aggregator polling the usage stream; unwritten records go to the write-back")
        wait_healthy(gateway_url + "/health", children[-1], "gateway")

        from gateway.keys import KeyStore

        store = KeyStore(client=client, table=LOCAL_TABLE_NAMES["KeysTable"])
        demo = os.environ.get("GATEWAY_DEMO_KEY") or mac.mint()
        if demo.startswith(MAC_PREFIX) and not mac.verify(demo):
            say("GATEWAY_DEMO_KEY was not made under these MAC secrets: the gateway will refuse "
                "it (set KEY_MAC_SECRETS to the secrets it was made with)")  # fmt: skip
        key, secret = store.create(
            name="demo", owner="local", secret=demo, mac_secret_id=mac.signer_id(demo)
        )
        model = models[0] if models else "MODEL"
        body = json.dumps(
            {"model": model, "messages": [{"role": "user", "content": "Hello!"}], "stream": True}
        )
        tokenizer_exports = " ".join(f"{k}={v}" for k, v in selection.gateway_env().items())
        responses_body = json.dumps({"model": model, "input": "Hello!", "max_output_tokens": 64})
        messages_body = json.dumps(
            {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "Hello!"}]}
        )
        sys.stdout.write(
            f"""
The stack is up. Ctrl-C stops it. Keys and usage live in memory (moto): they are gone
when the stack stops (a fixed demo key: GATEWAY_DEMO_KEY).

  demo key:  {secret}   (key_id {key.key_id})
  docs:      {gateway_url}/docs

Try it:
  curl -N {gateway_url}/v1/chat/completions \\
    -H "Authorization: Bearer {secret}" -H "Content-Type: application/json" \\
    -d '{body}'
  curl {gateway_url}/v1/responses \\
    -H "Authorization: Bearer {secret}" -H "Content-Type: application/json" \\
    -d '{responses_body}'
  curl {gateway_url}/v1/messages \\
    -H "x-api-key: {secret}" -H "anthropic-version: 2023-06-01" \\
    -H "Content-Type: application/json" -d '{messages_body}'

Point the gateway CLI at this DynamoDB (in another shell):
  export AWS_ENDPOINT_URL_DYNAMODB={dynamodb_url} AWS_DEFAULT_REGION=us-east-1
  export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
  export KEYS_TABLE={LOCAL_TABLE_NAMES["KeysTable"]} USAGE_TABLE={LOCAL_TABLE_NAMES["UsageTable"]}
  export AWS_ENDPOINT_URL_SSM={dynamodb_url} KEY_MAC_SECRETS_PARAMETER={LOCAL_MAC_PARAMETER}
  export {tokenizer_exports}
{config_export}  .venv/bin/gateway usage --key-id {key.key_id}

Routing: {model} is served by two replicas (gateway endpoints list). Pause one with
  kill -STOP {replica.pid}     (resume: kill -CONT {replica.pid}; then gateway endpoints probe)
and watch `endpoint` in gateway usage --key-id {key.key_id} --json move to replica-1.

"""
        )
        sys.stdout.flush()
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        # The second replica may be stopped by hand (README): the stack keeps running.
        while all(c.poll() is None for c in children if c is not replica):
            time.sleep(0.5)
        say("a component exited; stopping")
        return 1
    except KeyboardInterrupt:
        say("stopping")
        return 0
    finally:
        stop_usage.set()  # the poller stops before DynamoDB does: no "poll failed" on exit
        if polling is not None:
            polling.join(timeout=10)
        stop_children(children)


if __name__ == "__main__":
    raise SystemExit(main())
