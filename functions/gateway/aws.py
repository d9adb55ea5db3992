"""AWS clients, built once per process, and the one place botocore errors are mapped."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from gateway.errors import DependencyError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# Standard retry mode backs off on throttling; short timeouts keep a sick table from
# holding a request (and a Lambda) hostage.
_DYNAMODB_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 4},
    connect_timeout=2,
    read_timeout=5,
    max_pool_connections=50,
)


@dataclass
class AwsClients:
    """Lazily built, process-wide boto3 clients. Pass a prebuilt client to inject a fake."""

    session: boto3.session.Session | None = None
    region_name: str | None = None
    # SageMaker runtime client settings (timeouts, pool); see upstream.sagemaker.client_config.
    sagemaker_config: Config | None = None

    @cached_property
    def _session(self) -> boto3.session.Session:
        return self.session or boto3.session.Session(region_name=self.region_name)

    @cached_property
    def dynamodb(self) -> DynamoDBClient:
        return self._session.client("dynamodb", config=_DYNAMODB_CONFIG)

    @cached_property
    def ssm(self) -> Any:
        return self._session.client("ssm")

    @cached_property
    def sagemaker_runtime(self) -> Any:
        return self._session.client("sagemaker-runtime", config=self.sagemaker_config)

    def read_ssm_parameter(self, name: str) -> str:
        with botocore_errors("SSM"):
            response = self.ssm.get_parameter(Name=name, WithDecryption=True)
        return str(response["Parameter"]["Value"])


class ConditionFailed(Exception):
    """A conditional write found its condition false (not a fault)."""

    def __init__(self, reasons: list[str] | None = None) -> None:
        super().__init__(", ".join(reasons or []))
        self.reasons = reasons or []


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def botocore_errors(service: str) -> Iterator[None]:
    """Map botocore failures to the gateway's own exceptions.

    A false condition becomes ConditionFailed (with per-item reasons for transactions);
    anything else is the dependency failing: DependencyError, a 503 to clients.
    """
    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        if code == "ConditionalCheckFailedException":
            raise ConditionFailed(["ConditionalCheckFailed"]) from exc
        if code == "TransactionCanceledException":
            reasons = [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]
            if "ConditionalCheckFailed" in reasons and all(
                r in ("None", "ConditionalCheckFailed") for r in reasons
            ):
                raise ConditionFailed(reasons) from exc
        raise DependencyError(f"{service} is unavailable ({code or 'error'})") from exc
    except BotoCoreError as exc:
        raise DependencyError(f"{service} is unavailable ({type(exc).__name__})") from exc
