"""The bench's processes: moto, gpusim, the DynamoDB stand-in and the gateway(s), each on a
free 127.0.0.1 port, stopped on exit (children also get SIGTERM if the bench dies)."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import boto3

from devstack.__main__ import LOCAL_AWS, wait_healthy
from devstack.bench.config import (
    DIRECT,
    EMBEDDING_MODEL,
    GATEWAY,
    GATEWAY_MOTO,
    KEY_CACHE_TTL,
    MODEL,
    NATIVE_MODEL,
    BenchConfig,
    Progress,
    say,
)
from devstack.dynamodb import CONTROL_PATH
from devstack.ports import free_ports
from devstack.tables import LOCAL_TABLE_NAMES, TEMPLATE_PATH, create_tables


def local_tables(moto_url: str) -> Any:
    """A DynamoDB client for the local moto server, its tables created from template.yaml
    (the bench's and guardbench's stacks both seed through it)."""
    client = boto3.client(
        "dynamodb",
        endpoint_url=moto_url,
        region_name=LOCAL_AWS["AWS_REGION"],
        aws_access_key_id=LOCAL_AWS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_AWS["AWS_SECRET_ACCESS_KEY"],
    )
    create_tables(client, template_path=TEMPLATE_PATH, names=LOCAL_TABLE_NAMES)
    return client


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the bench process dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    headers: dict[str, str]
    pid: int  # the server whose CPU is this path's "CPU per request"
    db_pid: int | None = None  # its DynamoDB (the stand-in, or moto)
    calls_url: str | None = None  # where its DynamoDB's call counts are read


def gateway_command(port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "--factory", "gateway.app:create_app",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
            "--loop", "uvloop", "--http", "httptools"]  # fmt: skip


def models_config(sim_url: str) -> str:
    upstream = {"type": "openai", "base_url": sim_url, "model": MODEL}
    models = [
        {"id": MODEL, "tokenizer": MODEL, "upstream": upstream},
        {"id": EMBEDDING_MODEL, "tokenizer": MODEL, "upstream": upstream, "routes": ["embeddings"]},
        {"id": NATIVE_MODEL, "tokenizer": MODEL, "upstream": upstream,
         "native_routes": ["responses", "messages"]},
    ]  # fmt: skip
    return json.dumps({"models": models})


class Stack:
    """moto, gpusim, the gateway(s) and the instant-DB stand-in; stopped on exit."""

    def __init__(
        self,
        config: BenchConfig,
        progress: Progress = say,
        *,
        gateway_functions: Path | None = None,
        gateway_prefix: Sequence[str] = (),
        start_seconds: float = 60,
        models: Callable[[str], str] = models_config,
    ) -> None:
        """`gateway_functions`: the gateway processes import the gateway from this
        functions/ directory (another checkout's) instead of this one's; `gateway_prefix`:
        a command the gateway runs under (bench/instructions.py: callgrind), which may
        make its start take up to `start_seconds`; `models`: MODELS_CONFIG for gpusim's
        URL (an older checkout may not know every field of this one's)."""
        self.config = config
        self.progress = progress
        self.gateway_functions = gateway_functions
        self.gateway_prefix = tuple(gateway_prefix)
        self.start_seconds = start_seconds
        self.models = models
        self.services: dict[str, Service] = {}
        self.secret = ""
        self.limited_secret = ""
        self.gateway_env: dict[str, str] = {}
        self._logs: list[IO[bytes]] = []

    def spawn(self, name: str, cmd: list[str], env: dict[str, str], url: str) -> Service:
        self.config.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.config.logs_dir / f"{name.replace(' ', '-').replace(',', '')}.log"
        log = log_path.open("wb")
        self._logs.append(log)
        process = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        )
        service = Service(name=name, process=process, url=url, log=log_path)
        self.services[name] = service
        return service

    def wait(self, service: Service, path: str) -> None:
        try:
            wait_healthy(
                service.url + path, service.process, service.name, seconds=self.start_seconds
            )
        except SystemExit:
            tail = service.log.read_text(errors="replace")[-2000:]
            self.progress(f"{service.name} failed to start; its log ({service.log}):\n{tail}")
            raise

    def url(self, name: str) -> str:
        return self.services[name].url

    def start(self) -> None:
        config = self.config
        tokenizers = config.tokenizers_dir.resolve()
        if not (tokenizers / MODEL / "tokenizer.json").is_file():
            raise SystemExit(f"no {MODEL}/tokenizer.json under {tokenizers} (TOKENIZERS_DIR)")
        py = sys.executable
        base_env = {**os.environ, **LOCAL_AWS}
        for var in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
            base_env.pop(var, None)
        names = ("moto", "gpusim", "instant", *config.paths)
        ports = dict(zip(names, free_ports(len(names)), strict=True))
        moto_url, sim_url, instant_url = (
            f"http://127.0.0.1:{ports[name]}" for name in ("moto", "gpusim", "instant")
        )
        self.progress(
            f"starting moto, gpusim, the DynamoDB stand-in and {len(config.paths) - 1} gateway(s)"
        )
        moto_cmd = [py, "-m", "devstack.dynamodb", "--port", str(ports["moto"])]
        self.spawn("moto", moto_cmd, base_env, moto_url)
        sim_cmd = [py, "-m", "gpusim", "--host", "127.0.0.1", "--port", str(ports["gpusim"]),
                   "--tokenizers-dir", str(tokenizers), "--ttft-ms", "0", "--tpot-ms", "0",
                   "--completion-tokens", str(config.completion_tokens), "--models", MODEL,
                   "--preload"]  # fmt: skip
        self.spawn("gpusim", sim_cmd, base_env, sim_url)
        self.gateway_env = {
            **base_env,
            "KEYS_TABLE": LOCAL_TABLE_NAMES["KeysTable"],
            "USAGE_TABLE": LOCAL_TABLE_NAMES["UsageTable"],
            "TOKENIZERS_DIR": str(tokenizers),
            "PRELOAD_TOKENIZERS": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "LOG_LEVEL": "WARNING",
            "KEY_CACHE_TTL_SECONDS": str(KEY_CACHE_TTL),
            "MODELS_CONFIG": self.models(sim_url),
            "AWS_ENDPOINT_URL_DYNAMODB": instant_url,
            # As in the tests: this shared machine can take seconds where DynamoDB takes
            # milliseconds (a fresh process's first key lookup also builds the DynamoDB
            # client), and a deadline met or not changes no figure but the error count.
            **{f"{name}_DEADLINE_SECONDS": "10" for name in ("KEY_LOOKUP", "ADMISSION")},
        }
        if self.gateway_functions is not None:
            infra = str(Path(__file__).resolve().parents[2])
            path = os.pathsep.join([str(self.gateway_functions), infra])
            self.gateway_env["PYTHONPATH"] = path
        instant_cmd = [py, "-m", "devstack.bench", "--serve-instant-dynamodb",
                       str(ports["instant"]), "--forward", moto_url,
                       "--db-latency-ms", str(config.db_latency_ms)]  # fmt: skip
        self.spawn("instant-db", instant_cmd, base_env, instant_url)
        self.spawn(GATEWAY, [*self.gateway_prefix, *gateway_command(ports[GATEWAY])],
                   self.gateway_env, f"http://127.0.0.1:{ports[GATEWAY]}")  # fmt: skip
        if config.moto_usage:
            env = {**self.gateway_env, "AWS_ENDPOINT_URL_DYNAMODB": moto_url}
            port = ports[GATEWAY_MOTO]
            self.spawn(GATEWAY_MOTO, gateway_command(port), env, f"http://127.0.0.1:{port}")
        self._seed(moto_url)
        for name in self.services:
            if name != "moto":
                self.wait(self.services[name], "/health")

    def _seed(self, moto_url: str) -> None:
        """Tables from template.yaml and the two bench keys, once moto answers."""
        self.wait(self.services["moto"], "/moto-api/data.json")
        client = local_tables(moto_url)
        from gateway.keys import KeyStore

        keys = KeyStore(client=client, table=LOCAL_TABLE_NAMES["KeysTable"])
        _, self.secret = keys.create(name="bench", owner="bench")
        # Limits that never refuse, so that every request makes its admission calls.
        _, self.limited_secret = keys.create(
            name="bench-limits", owner="bench", rpm=10**9, tpm=10**12, monthly_tokens=10**15
        )

    def stop_service(self, service: Service) -> None:
        if service.process.poll() is None:
            service.process.terminate()
        try:
            service.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            service.process.kill()
            service.process.wait()

    def stop(self) -> None:
        for service in self.services.values():
            if service.process.poll() is None:
                service.process.terminate()
        for service in self.services.values():
            self.stop_service(service)
        for log in self._logs:
            log.close()

    def check_alive(self) -> None:
        for service in self.services.values():
            if service.process.poll() is not None:
                raise RuntimeError(
                    f"{service.name} exited with status {service.process.returncode} "
                    f"(log: {service.log})"
                )

    def target(self, path: str, route: str = "/v1/chat/completions") -> Target:
        if path == DIRECT:
            server = self.services["gpusim"]
            return Target(path, server.url + route, {}, server.process.pid)
        server = self.services[path]
        headers = {"Authorization": f"Bearer {self.secret}"}
        db = self.services["instant-db" if path == GATEWAY else "moto"]
        calls = db.url + ("/calls" if path == GATEWAY else CONTROL_PATH)
        return Target(path, server.url + route, headers, server.process.pid, db.process.pid, calls)

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
