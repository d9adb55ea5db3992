"""The local stack for a chaos run, on free ports, as `make run` starts it (devstack).

Unlike `make run`, the aggregator and the write-back run here in the harness's process,
with clients built for this stack's DynamoDB (nothing in os.environ changes), and the
gateway's log lines are kept (the audit looks for secrets and tracebacks in them).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import boto3
from gateway.keys import KeyStore
from gateway.keys.mac import KeyMac, new_mac_secret
from gateway.usage import UsageStore
from gateway.usage.aggregate import Aggregator
from gateway.usage.batches import aggregate, write_back

from devstack.__main__ import (
    DEFAULT_TOKENIZERS,
    LOCAL_AWS,
    LOCAL_MAC_PARAMETER,
    start_replica,
    stop_children,
    wait_dynamodb,
    wait_healthy,
    with_replicas,
)
from devstack.dynamodb import FaultControl
from devstack.ports import free_ports
from devstack.server import gateway_command
from devstack.streams import LogSubscription, StreamPoller, matches_unwritten
from devstack.tables import LOCAL_TABLE_NAMES, TEMPLATE_PATH, create_tables
from devstack.tokenizers import select, sim_args

USAGE_TABLE = LOCAL_TABLE_NAMES["UsageTable"]
RETENTION_DAYS = 30
UNWRITTEN = "usage_record_unwritten"
# Deliveries of one unwritten line before the write-back gives up on it (about a minute).
WRITE_BACK_ATTEMPTS = 40


@dataclass
class Replica:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    paused: bool = False

    def pause(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)
        self.paused = False


@dataclass
class Stack:
    gateway_url: str
    dynamodb_url: str
    client: Any  # boto3 DynamoDB client on this stack
    faults: FaultControl
    replicas: list[Replica]
    models: list[str]
    mac: KeyMac
    poller: StreamPoller
    # The unwritten records' log lines not yet written back (_write_back).
    unwritten: queue.Queue[str] = field(default_factory=queue.Queue)
    log_lines: list[str] = field(default_factory=list)
    writebacks: int = 0
    writeback_failures: int = 0

    def new_key(self, name: str, **limits: int | None) -> tuple[str, str]:
        """A MAC-format key with these limits: (key_id, secret)."""
        store = KeyStore(client=self.client, table=LOCAL_TABLE_NAMES["KeysTable"])
        secret = self.mac.mint()
        key, secret = store.create(
            name=name, owner="chaos", secret=secret, mac_secret_id=self.mac.signer_id(secret),
            **limits,  # type: ignore[arg-type]
        )  # fmt: skip
        return key.key_id, secret

    def usage(self) -> UsageStore:
        return UsageStore(client=self.client, table=USAGE_TABLE, retention_days=RETENTION_DAYS)

    def drain(self, *, timeout: float = 180.0) -> None:
        """Until every unwritten record is written back and the aggregator has read
        everything written to the usage stream."""
        self.unwritten.join()
        self.poller.drain(timeout=timeout, max_failures=1000)


def _client(service: str, endpoint: str) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint,
        region_name=LOCAL_AWS["AWS_REGION"],
        aws_access_key_id=LOCAL_AWS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_AWS["AWS_SECRET_ACCESS_KEY"],
    )


def _follow(stack: Stack, stdout: Any, unwritten: queue.Queue[str]) -> None:
    """The gateway's log lines, read as they come: kept, and the unwritten records' lines
    queued for the write-back. Reading never waits on DynamoDB: a reader that did (the
    write-back during a pause) would let the gateway's stdout pipe fill, and the gateway's
    next log line would then block its event loop (no departure noticed, no deadline kept),
    which the deployed log subscription never does."""
    for raw in iter(stdout.readline, b""):
        line = raw.decode(errors="replace")
        stack.log_lines.append(line)
        if UNWRITTEN in line and matches_unwritten(line):
            unwritten.put(line)


def _write_back(stack: Stack, unwritten: queue.Queue[str], store: UsageStore) -> None:
    """What the log subscription of UsageWritebackFunction does with the unwritten lines,
    each retried until it is written (as Lambda retries a failed event), in order."""
    subscription = LogSubscription(handler=lambda event: write_back(event, store=store))
    while True:
        line = unwritten.get()
        for attempt in range(WRITE_BACK_ATTEMPTS):
            try:
                subscription.deliver([line])
                stack.writebacks += 1
                break
            except Exception:  # noqa: BLE001 - e.g. DynamoDB paused: as Lambda, try again
                time.sleep(min(2.0, 0.2 * (attempt + 1)))
        else:
            stack.writeback_failures += 1  # the audit then finds the record missing
        unwritten.task_done()


@contextmanager
def running_stack(*, gateway_env: dict[str, str] | None = None, say: Any = None) -> Iterator[Stack]:
    """DynamoDB (moto, with faults), two gpusim replicas of the first model, the gateway,
    the aggregator polling the usage stream; all stopped on exit."""
    quiet = say or (lambda _message: None)
    selection = select(os.environ, default_dir=DEFAULT_TOKENIZERS, say=quiet)
    names = ("dynamodb", "sim1", "sim2", "gateway")
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    dynamodb_url = f"http://127.0.0.1:{ports['dynamodb']}"
    env = {**os.environ, **LOCAL_AWS, "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_url}
    children: list[subprocess.Popen[bytes]] = []
    stop = threading.Event()
    replicas: list[Replica] = []
    follower: threading.Thread | None = None  # reads the gateway's stdout
    try:
        db_cmd = [sys.executable, "-m", "devstack.dynamodb", "--port", str(ports["dynamodb"])]
        children.append(
            subprocess.Popen(db_cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
        client = _client("dynamodb", dynamodb_url)
        wait_dynamodb(client, children[0])
        create_tables(client, template_path=TEMPLATE_PATH, names=LOCAL_TABLE_NAMES)
        mac = _put_mac_secrets(_client("ssm", dynamodb_url))
        for n in (1, 2):
            port = ports[f"sim{n}"]
            process = start_replica(port, env, sim_args(selection))
            children.append(process)
            replicas.append(Replica(f"replica-{n}", f"http://127.0.0.1:{port}", process))
        config = with_replicas(selection.models_config(replicas[0].url), [r.url for r in replicas])
        models = [m["id"] for m in json.loads(config)["models"]]
        genv = {
            **env,
            "KEYS_TABLE": LOCAL_TABLE_NAMES["KeysTable"],
            "USAGE_TABLE": USAGE_TABLE,
            **selection.gateway_env(),
            "PRELOAD_TOKENIZERS": "true",
            "AWS_ENDPOINT_URL_SSM": dynamodb_url,
            "KEY_MAC_SECRETS_PARAMETER": LOCAL_MAC_PARAMETER,
            "POWERTOOLS_METRICS_DISABLED": "true",
            "MODELS_CONFIG": config,
            "UPSTREAM_FIRST_TOKEN_TIMEOUT": "3",
            **(gateway_env or {}),
        }
        genv.pop("KEY_MAC_SECRETS", None)
        gateway_url = f"http://127.0.0.1:{ports['gateway']}"
        gateway = subprocess.Popen(
            gateway_command(ports["gateway"]), env=genv, stdout=subprocess.PIPE
        )
        children.append(gateway)
        aggregator = Aggregator(client=client, table=USAGE_TABLE)
        poller = StreamPoller(
            dynamodb=client,
            streams=_client("dynamodbstreams", dynamodb_url),
            table=USAGE_TABLE,
            handler=lambda event: aggregate(event, aggregator=aggregator),
        )
        unwritten: queue.Queue[str] = queue.Queue()
        stack = Stack(
            gateway_url=gateway_url, dynamodb_url=dynamodb_url, client=client,
            faults=FaultControl(dynamodb_url), replicas=replicas, models=models, mac=mac,
            poller=poller, unwritten=unwritten,
        )  # fmt: skip
        store = UsageStore(client=client, table=USAGE_TABLE, retention_days=RETENTION_DAYS)
        follower = threading.Thread(
            target=_follow, args=(stack, gateway.stdout, unwritten), daemon=True
        )
        follower.start()
        for target, args in ((_write_back, (stack, unwritten, store)), (poller.run, (stop,))):
            threading.Thread(target=target, args=args, daemon=True).start()
        wait_healthy(gateway_url + "/health", gateway, "gateway")
        yield stack
    finally:
        stop.set()
        for replica in replicas:
            if replica.paused:
                with suppress(ProcessLookupError):
                    replica.resume()
        with suppress(Exception):
            FaultControl(dynamodb_url).set(paused=False)
        _stop(children, follower)


def _stop(children: list[subprocess.Popen[bytes]], follower: threading.Thread | None) -> None:
    """Every child stopped and reaped, then the gateway's log reader ended and its pipe
    closed (not left to gc: a ResourceWarning in whatever runs next)."""
    stop_children(children)
    if follower is not None:
        follower.join(timeout=10)  # the gateway gone, its pipe ends: the reader returns
    for child in children:
        if child.stdout is not None:
            child.stdout.close()


def _put_mac_secrets(ssm: Any) -> KeyMac:
    """A fresh MAC secret in moto's SSM, where the gateway reads it (as `make run` does)."""
    value = json.dumps([new_mac_secret()])
    ssm.put_parameter(Name=LOCAL_MAC_PARAMETER, Type="SecureString", Value=value, Overwrite=True)
    return KeyMac.parse(value)
