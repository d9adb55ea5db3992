"""A local DynamoDB: moto's server, patched to keep DynamoDB's guarantees (motofix).

`python -m devstack.dynamodb --port 8001` serves until terminated. Running it as its own
process keeps its state apart from any in-process `moto.mock_aws` (which resets moto's
shared backends when it exits) and off the caller's GIL.

Faults, set at start (`--transaction-ms`, `--latency-ms`, `--throttle-rate`, or the env
vars DEVSTACK_DYNAMODB_TRANSACTION_MS, _LATENCY_MS, _THROTTLE_RATE) or at any time
through the control endpoint, which also reports calls per operation:

    GET  /_devstack/faults   -> {"transaction_seconds": ..., "paused": ..., "calls": {...}}
    POST /_devstack/faults   {"paused": true} | {"latency_seconds": 0.005} |
                             {"throttle_rate": 0.1} | {"transaction_seconds": 0.02} |
                             {"reset_counts": true}

`FaultControl(endpoint)` is the client for it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from devstack import motofix
from devstack.motofix import ERROR_PREFIX, FAULTS

CONTROL_PATH = "/_devstack/faults"
_THROTTLED = {
    "__type": ERROR_PREFIX + "ProvisionedThroughputExceededException",
    "message": "The level of configured provisioned throughput for the table was exceeded. "
    "Consider increasing your provisioning level with the UpdateTable API.",
}
_DYNAMODB_TARGET = "DynamoDB_20120810."

StartResponse = Callable[..., Any]


class FaultInjector:
    """WSGI middleware in front of moto: the control endpoint, then, for DynamoDB calls,
    counting, pauses, latency and throttling (the real error shape, HTTP 400)."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == CONTROL_PATH:
            return self._control(environ, start_response)
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        if target.startswith(_DYNAMODB_TARGET):
            FAULTS.calls[target[len(_DYNAMODB_TARGET) :]] += 1
            FAULTS.resumed.wait()
            if FAULTS.latency_seconds:
                time.sleep(FAULTS.latency_seconds)
            if FAULTS.throttle_rate and random.random() < FAULTS.throttle_rate:
                return _json(start_response, "400 Bad Request", _THROTTLED)
        return self._app(environ, start_response)

    @staticmethod
    def _control(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            FAULTS.update(json.loads(environ["wsgi.input"].read(length) or b"{}"))
        return _json(start_response, "200 OK", FAULTS.to_json())


def _json(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status,
        [("Content-Type", "application/x-amz-json-1.0"), ("Content-Length", str(len(data)))],
    )
    return [data]


class FaultControl:
    """Client of a running devstack.dynamodb's control endpoint."""

    def __init__(self, endpoint: str) -> None:
        self._url = endpoint.rstrip("/") + CONTROL_PATH

    def set(self, **values: Any) -> dict[str, Any]:
        request = urllib.request.Request(self._url, data=json.dumps(values).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            state: dict[str, Any] = json.loads(response.read())
        return state

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(self._url, timeout=5) as response:
            state: dict[str, Any] = json.loads(response.read())
        return state

    def calls(self) -> dict[str, int]:
        return dict(self.state()["calls"])

    @contextmanager
    def paused(self) -> Iterator[None]:
        self.set(paused=True)
        try:
            yield
        finally:
            self.set(paused=False)


def _env_float(name: str) -> float:
    return float(os.environ.get(name) or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument(
        "--transaction-ms",
        type=float,
        default=_env_float("DEVSTACK_DYNAMODB_TRANSACTION_MS"),
        help="how long a transaction holds its items (conflicts meanwhile)",
    )
    parser.add_argument(
        "--latency-ms", type=float, default=_env_float("DEVSTACK_DYNAMODB_LATENCY_MS")
    )
    parser.add_argument(
        "--throttle-rate", type=float, default=_env_float("DEVSTACK_DYNAMODB_THROTTLE_RATE")
    )
    args = parser.parse_args()
    motofix.install()
    FAULTS.update(
        {
            "transaction_seconds": args.transaction_ms / 1000,
            "latency_seconds": args.latency_ms / 1000,
            "throttle_rate": args.throttle_rate,
        }
    )
    app = FaultInjector(DomainDispatcherApplication(create_backend_app))
    server = make_server(
        args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    FAULTS.update({"paused": False})
    server.shutdown()


if __name__ == "__main__":
    main()
