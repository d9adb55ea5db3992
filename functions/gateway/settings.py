"""The gateway's configuration: one typed object, read from the environment.

Every field's environment variable is its name in upper case; template.yaml sets the
same names on the Lambda functions.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    # DynamoDB tables (the endpoint comes from boto3's own AWS_ENDPOINT_URL_DYNAMODB).
    keys_table: str = "gateway-keys"
    usage_table: str = "gateway-usage"
    # Stored responses of the Responses API (gateway/conversations), kept this many
    # days (DynamoDB TTL; OpenAI keeps stored responses 30 days).
    responses_table: str = "gateway-responses"
    responses_retention_days: int = Field(default=30, gt=0)

    # Which upstream serves which model, and with which tokenizer: JSON text, a file
    # holding that JSON, or the name of an SSM parameter holding it (first set wins).
    models_config: str | None = None
    models_config_file: Path | None = None
    models_config_ssm_parameter: str | None = None

    # Tokenizer files: <tokenizers_dir>/<name>/tokenizer.json, where <name> is the model
    # entry's `tokenizer` with "/" replaced by "--". Missing files are downloaded from
    # the Hugging Face Hub (hf_endpoint) once into tokenizer_cache_dir.
    tokenizers_dir: Path | None = None
    tokenizer_cache_dir: Path = Path("/tmp/gateway-tokenizers")
    hf_endpoint: str = "https://huggingface.co"
    hf_token: SecretStr | None = None
    # Load every configured tokenizer while the app starts (Lambda init, SnapStart), and
    # build what the first request would (the DynamoDB client, the upstream client's
    # modules): the first request's time to first token then pays none of it.
    preload_tokenizers: bool = False

    # Upstream HTTP client.
    upstream_connect_timeout: float = Field(default=5.0, gt=0)
    upstream_read_timeout: float = Field(default=300.0, gt=0)
    upstream_max_connections: int = Field(default=100, gt=0)

    # Requests.
    # For keys with token limits: the generation cap reserved (and sent upstream) when a
    # request sets no max_tokens and its model config has no cap.
    default_max_tokens: int = Field(default=4096, gt=0)
    # Requests one key may have in flight at once on one instance, unless the key sets
    # its own `max_concurrency` (limits/concurrency.py); past it, a 429.
    key_max_concurrency: int = Field(default=64, gt=0)
    # Share of completed requests whose completion the gateway counts itself although the
    # upstream reported usage, to cross-check the figures (UsageMismatches metric,
    # gateway_completion_tokens in the record); otherwise that count would add nothing.
    usage_audit_rate: float = Field(default=0.05, ge=0, le=1)
    max_request_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    # Bounded lifetime of the in-process API-key cache (documented: at most 30 s).
    key_cache_ttl_seconds: float = Field(default=10.0, ge=0, le=30)
    # API keys' MAC secrets (docs/SECURITY.md, "Keys only the gateway can make"): the name
    # of an SSM SecureString parameter holding them, read once per process, or (local use,
    # tests) the secrets themselves, which win. Either is a JSON list of strings or one
    # secret per line, newest first: the newest mints, every one verifies. Neither set: no
    # key of the MAC format (sk-gw3_) is accepted, only the legacy formats.
    key_mac_secrets_parameter: str | None = None
    key_mac_secrets: SecretStr | None = None
    # The key of the cache salts' HMAC (keys/tenancy.py): set it, so that no one who knows
    # an owner's name or a key id can compute its salt; unset, a fixed key is used.
    cache_salt_secret: SecretStr | None = None
    # Not read: template.yaml sets it from KeyMacSecretsRevision, so that a deployment after
    # a change of the parameter publishes new function versions, which read the new list.
    key_mac_secrets_revision: str = ""
    # Raw usage records expire after this many days (DynamoDB TTL); rollups are kept.
    usage_retention_days: int = Field(default=90, gt=0)

    # Deadlines of the DynamoDB calls on the request path, retries included (template.yaml
    # sets them from its *DeadlineSeconds parameters). Past the key lookup's or
    # admission's, the request gets a 503; past the usage write's, the response completes
    # and the record goes to the `usage_record_unwritten` log line for the write-back.
    key_lookup_deadline_seconds: float = Field(default=1.0, gt=0, le=10)
    admission_deadline_seconds: float = Field(default=1.0, gt=0, le=10)
    usage_write_deadline_seconds: float = Field(default=1.5, gt=0, le=10)
    # botocore's own timeouts for the path's DynamoDB client (it makes one attempt per
    # call; the stores retry quickly within the deadlines above).
    dynamodb_connect_timeout: float = Field(default=0.5, gt=0)
    dynamodb_read_timeout: float = Field(default=1.0, gt=0)

    # Routing across a model's endpoints (docs/ROUTING.md). A request makes at most
    # `routing_max_attempts` attempts, and starts none (nor waits for a Retry-After) past
    # `routing_budget_seconds` after its first. A stream's first chunk must arrive within
    # `upstream_first_token_timeout` when another attempt is possible.
    routing_max_attempts: int = Field(default=3, ge=1, le=10)
    routing_budget_seconds: float = Field(default=5.0, ge=0, le=120)
    upstream_first_token_timeout: float = Field(default=60.0, gt=0)
    # An endpoint that fails `endpoint_allowed_fails` times within
    # `endpoint_failure_window_seconds` is cooled down for `endpoint_cooldown_seconds`
    # on every instance (a DynamoDB item in the usage table, read at most every
    # `endpoint_state_cache_seconds`).
    endpoint_allowed_fails: int = Field(default=3, ge=1)
    endpoint_failure_window_seconds: float = Field(default=60.0, gt=0)
    endpoint_cooldown_seconds: float = Field(default=60.0, ge=0)
    endpoint_state_cache_seconds: float = Field(default=5.0, ge=0, le=60)
    # Prefix-cache affinity (backends/affinity.py): a conversation's prefix goes where it
    # went before; off, weighted P2C for every request. Each vLLM endpoint's /metrics is
    # sampled every `endpoint_load_sample_seconds` (shared through the usage table); 0:
    # never (routing then sees only this instance's in-flight counts).
    routing_affinity: bool = True
    endpoint_load_sample_seconds: float = Field(default=1.0, ge=0, le=60)

    log_level: str = "INFO"
    # CloudWatch metrics (EMF), under Powertools' own variable names. Disabled, a request
    # builds no metric at all.
    powertools_metrics_namespace: str = "GpuGateway"
    powertools_metrics_disabled: bool = False
    # X-Ray tracing follows Powertools' rule (observability/tracing.py): on inside Lambda
    # (LAMBDA_TASK_ROOT, set by the runtime) unless POWERTOOLS_TRACE_DISABLED is truthy
    # ("1", "true", "yes", "on", ...: kept as text, as Powertools reads it) or this is
    # `sam local` (AWS_SAM_LOCAL) or Chalice (AWS_CHALICE_CLI_MODE).
    powertools_trace_disabled: str = ""
    lambda_task_root: str = ""
    aws_sam_local: str = ""
    aws_chalice_cli_mode: str = ""

    # Serve the interactive docs (/docs, /redoc) and /openapi.json. Production stacks may
    # turn them off (template.yaml: EnableApiDocs=false); the API itself is unchanged.
    docs_enabled: bool = True

    # SnapStart under the Lambda Web Adapter (StreamFunction): the app's paths the adapter
    # POSTs to before the snapshot and after each restore (gateway.snapstart); no routes
    # when unset.
    aws_lwa_snapstart_before_checkpoint_path: str | None = None
    aws_lwa_snapstart_after_restore_path: str | None = None
