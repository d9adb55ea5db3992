"""A real DynamoDB endpoint for tests: moto's server on 127.0.0.1, tables from template.yaml."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
from devstack.tables import LOCAL_TABLE_NAMES, TEMPLATE_PATH, create_tables
from moto.server import ThreadedMotoServer

from tests.support.servers import free_port

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@contextmanager
def moto_dynamodb() -> Iterator[str]:
    """Start moto's server, point AWS_ENDPOINT_URL_DYNAMODB at it, create the tables."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in [*FAKE_CREDENTIALS, "AWS_ENDPOINT_URL_DYNAMODB"]}
    os.environ.update(FAKE_CREDENTIALS)
    os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = endpoint
    try:
        create_tables(
            boto3.client("dynamodb"), template_path=TEMPLATE_PATH, names=LOCAL_TABLE_NAMES
        )
        yield endpoint
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
