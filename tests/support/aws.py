"""A real DynamoDB endpoint for tests: moto's server in its own process on 127.0.0.1,
with the tables created from template.yaml."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
from botocore.exceptions import EndpointConnectionError
from devstack.tables import LOCAL_TABLE_NAMES, TEMPLATE_PATH, create_tables

from tests.support.processes import stop
from tests.support.servers import free_port

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@contextmanager
def moto_dynamodb(*args: str) -> Iterator[str]:
    """Start moto's server, point AWS_ENDPOINT_URL_DYNAMODB at it, create the tables.
    `args` go to devstack.dynamodb (e.g. "--transaction-ms", "25")."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.dynamodb", "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    saved = {k: os.environ.get(k) for k in [*FAKE_CREDENTIALS, "AWS_ENDPOINT_URL_DYNAMODB"]}
    os.environ.update(FAKE_CREDENTIALS)
    os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = endpoint
    client = boto3.client("dynamodb")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                client.list_tables()
                break
            except EndpointConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto's DynamoDB server did not start") from None
                time.sleep(0.1)
        create_tables(client, template_path=TEMPLATE_PATH, names=LOCAL_TABLE_NAMES)
        yield endpoint
    finally:
        client.close()  # its pooled socket, else left to the garbage collector
        stop(process)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
