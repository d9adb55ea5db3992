"""The process's resources (gateway.resources) at app shutdown: everything that holds
connections closes them, the AWS clients' pools included (before, a stopped gateway left
its boto3 sockets to the garbage collector, reported as unclosed in a later test)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import running_gateway


def test_shutdown_closes_the_aws_clients_connections(
    dynamodb: str, tokenizers_dir: Path, sim_url: str
) -> None:
    closed: list[str] = []
    with running_gateway(tokenizers_dir, sim_url) as gw:
        gw.new_key()  # the DynamoDB client is built, and holds a pooled connection
        client = gw.resources.aws.dynamodb
        original = client.close
        client.close = lambda: (closed.append("dynamodb"), original())[1]
    assert closed == ["dynamodb"]
