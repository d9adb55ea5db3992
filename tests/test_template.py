"""template.yaml: lints clean, and its SAM translation streams where it must.

The translation runs offline with aws-sam-translator (what `sam deploy` does in the
CloudFormation service). A small evaluator of CloudFormation intrinsics then resolves the
IAM policy for given parameter values, so the least-privilege statements are checked as
CloudFormation would create them.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import pytest
from devstack.tables import TEMPLATE_PATH, load_template

LWA_ARM64 = re.compile(
    r"^arn:\$\{AWS::Partition\}:lambda:\$\{AWS::Region\}:753240598075:layer:"
    r"LambdaAdapterLayerArm64:\$\{LambdaWebAdapterLayerVersion\}$"
)
MANAGED_POLICIES = {
    name: f"arn:aws:iam::aws:policy/{path}"
    for name, path in [
        ("AWSLambdaBasicExecutionRole", "service-role/AWSLambdaBasicExecutionRole"),
        ("AWSXrayWriteOnlyAccess", "AWSXrayWriteOnlyAccess"),
        # SAM's for a DynamoDB stream event source: read the stream (UsageAggregatorFunction).
        ("AWSLambdaDynamoDBExecutionRole", "service-role/AWSLambdaDynamoDBExecutionRole"),
    ]
}


class _ManagedPolicies:
    """aws-sam-translator's managed-policy loader, without calling IAM."""

    def load(self) -> dict[str, str]:
        return dict(MANAGED_POLICIES)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


@pytest.fixture(scope="module")
def translated(template: dict[str, Any]) -> Iterator[dict[str, Any]]:
    from samtranslator.translator.transform import transform

    packaged = copy.deepcopy(template)  # what `sam package` uploads and points at
    packaged["Globals"]["Function"]["CodeUri"] = "s3://artifacts/functions.zip"
    packaged["Resources"]["TokenizersLayer"]["Properties"]["ContentUri"] = (
        "s3://artifacts/layer.zip"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", "eu-west-1")
        yield transform(packaged, {}, _ManagedPolicies())


def _resources(cfn: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in cfn["Resources"].items() if v["Type"] == type_}


def _integration(translated: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    (api,) = _resources(translated, "AWS::ApiGateway::RestApi").values()
    operation = api["Properties"]["Body"]["paths"][path][method]
    integration: dict[str, Any] = operation["x-amazon-apigateway-integration"]
    return integration


def _uri(integration: dict[str, Any]) -> str:
    uri = integration["uri"]["Fn::Sub"]
    assert isinstance(uri, str)
    return uri


# ---------------------------------------------------------------------------- lint


def test_cfn_lint_passes() -> None:
    from cfnlint.api import lint_file

    matches = lint_file(TEMPLATE_PATH)
    assert matches == [], "\n".join(str(m) for m in matches)


# ---------------------------------------------------------------------- API routes


METERED_ROUTES = [
    "/v1/chat/completions",
    "/chat/completions",
    "/v1/completions",
    "/completions",
    "/v1/embeddings",
    "/embeddings",
    "/v1/responses",
    "/v1/messages",
    "/v1/messages/count_tokens",
]


@pytest.mark.parametrize("path", METERED_ROUTES)
def test_chat_routes_stream_from_the_lwa_function(translated: dict[str, Any], path: str) -> None:
    integration = _integration(translated, path, "post")
    assert integration["type"] == "aws_proxy"
    assert integration["responseTransferMode"] == "STREAM"
    uri = _uri(integration)
    assert "/2021-11-15/functions/" in uri
    assert uri.endswith("/response-streaming-invocations")
    assert "${StreamFunctionAliaslive}" in uri
    assert integration["timeoutInMillis"] == 900000


@pytest.mark.parametrize("path", ["/", "/{proxy+}"])
def test_other_routes_are_buffered_through_mangum(translated: dict[str, Any], path: str) -> None:
    integration = _integration(translated, path, "x-amazon-apigateway-any-method")
    assert integration["type"] == "aws_proxy"
    assert "responseTransferMode" not in integration
    uri = _uri(integration)
    assert "/2015-03-31/functions/${ApiFunctionAliaslive}/invocations" in uri


def test_source_uses_response_stream_not_stream(template: dict[str, Any]) -> None:
    # `ResponseTransferMode: STREAM` is accepted by SAM and silently buffers.
    events = template["Resources"]["StreamFunction"]["Properties"]["Events"]
    assert {e["Properties"]["ResponseTransferMode"] for e in events.values()} == {"RESPONSE_STREAM"}


def test_api_is_regional_rest_api(translated: dict[str, Any]) -> None:
    (api,) = _resources(translated, "AWS::ApiGateway::RestApi").values()
    assert api["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    (stage,) = _resources(translated, "AWS::ApiGateway::Stage").values()
    assert stage["Properties"]["TracingEnabled"] is True
    assert not _resources(translated, "AWS::ApiGatewayV2::Api")


# ----------------------------------------------------------------------- functions


def test_stream_function_runs_under_the_web_adapter(translated: dict[str, Any]) -> None:
    props = translated["Resources"]["StreamFunction"]["Properties"]
    env = props["Environment"]["Variables"]
    assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert env["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert env["AWS_LWA_READINESS_CHECK_PATH"] == "/health"
    assert env["AWS_LWA_PORT"] == "8080"
    assert props["Handler"] == "run.sh"
    assert props["Runtime"] == "python3.12"
    assert props["Architectures"] == ["arm64"]
    assert props["Timeout"] == 900
    assert props["TracingConfig"] == {"Mode": "Active"}
    lwa = [layer for layer in props["Layers"] if "Fn::If" in layer]
    assert len(lwa) == 1
    _, override, default = lwa[0]["Fn::If"]
    assert override == {"Ref": "LambdaWebAdapterLayerArn"}
    assert LWA_ARM64.match(default["Fn::Sub"])


def test_api_function_is_mangum_without_the_adapter(translated: dict[str, Any]) -> None:
    props = translated["Resources"]["ApiFunction"]["Properties"]
    env = props["Environment"]["Variables"]
    assert props["Handler"] == "gateway.lambdas.api.handler"
    assert "AWS_LAMBDA_EXEC_WRAPPER" not in env
    assert "AWS_LWA_INVOKE_MODE" not in env
    assert props["Runtime"] == "python3.12"
    assert props["Architectures"] == ["arm64"]
    assert props["TracingConfig"] == {"Mode": "Active"}


@pytest.mark.parametrize("function", ["StreamFunction", "ApiFunction"])
def test_function_settings_match_the_app(translated: dict[str, Any], function: str) -> None:
    env = translated["Resources"][function]["Properties"]["Environment"]["Variables"]
    assert env["KEYS_TABLE"] == {"Ref": "KeysTable"}
    assert env["USAGE_TABLE"] == {"Ref": "UsageTable"}
    assert env["TOKENIZERS_DIR"] == "/opt/tokenizers"
    assert env["POWERTOOLS_SERVICE_NAME"] == "gateway"
    for name in ("LOG_LEVEL", "KEY_CACHE_TTL_SECONDS", "USAGE_RETENTION_DAYS", "MODELS_CONFIG"):
        assert name in env
    from gateway.settings import Settings

    settings_fields = {name.upper() for name in Settings.model_fields}
    ours = {n for n in env if not n.startswith(("AWS_", "POWERTOOLS_", "UPSTREAM_SECRET"))}
    assert ours <= settings_fields, ours - settings_fields


def test_snapstart_is_optional_behind_the_live_alias(template: dict[str, Any]) -> None:
    globals_ = template["Globals"]["Function"]
    assert globals_["AutoPublishAlias"] == "live"
    assert globals_["SnapStart"] == {
        "ApplyOn": {"Fn::If": ["SnapStartEnabled", "PublishedVersions", "None"]}
    }
    assert template["Conditions"]["SnapStartEnabled"] == {
        "Fn::Equals": [{"Ref": "EnableSnapStart"}, "true"]
    }


def test_snapstart_hooks_reach_the_stream_function_app(template: dict[str, Any]) -> None:
    """Under the Web Adapter the runtime's Python hooks never reach uvicorn's process: the
    adapter calls the app's hook routes instead, named only when SnapStart is on."""
    from gateway.settings import Settings

    env = template["Resources"]["StreamFunction"]["Properties"]["Environment"]["Variables"]
    for name in ("BEFORE_CHECKPOINT", "AFTER_RESTORE"):
        variable = f"AWS_LWA_SNAPSTART_{name}_PATH"
        assert variable.lower() in Settings.model_fields
        condition, path, otherwise = env[variable]["Fn::If"]
        assert condition == "SnapStartEnabled" and path.startswith("/_snapstart/")
        assert otherwise == {"Ref": "AWS::NoValue"}
    api_env = template["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert not any(name.startswith("AWS_LWA_SNAPSTART") for name in api_env)


def test_openai_base_url_output(template: dict[str, Any]) -> None:
    url = template["Outputs"]["OpenAIBaseUrl"]["Value"]["Fn::Sub"]
    assert url == "https://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${StageName}/v1"
    assert {"KeysTableName", "UsageTableName"} <= set(template["Outputs"])


@pytest.mark.parametrize("table", ["KeysTable", "UsageTable", "ResponsesTable"])
def test_tables_are_durable(template: dict[str, Any], table: str) -> None:
    props = template["Resources"][table]["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"] == {"SSEEnabled": True}
    assert template["Resources"][table]["DeletionPolicy"] == "Retain"


# ---------------------------------------------------------------------------- IAM


class _Evaluator:
    """Just enough of CloudFormation's intrinsic functions to resolve this template's IAM."""

    NO_VALUE = object()

    def __init__(self, template: dict[str, Any], parameters: dict[str, str]) -> None:
        self.values: dict[str, Any] = {
            "AWS::Region": "eu-west-1",
            "AWS::AccountId": "123456789012",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "gw",
        }
        for name, spec in template.get("Parameters", {}).items():
            value = parameters.get(name, str(spec.get("Default", "")))
            if spec["Type"] == "CommaDelimitedList":
                self.values[name] = value.split(",")
            else:
                self.values[name] = value
        self.conditions = template.get("Conditions", {})
        self.resources = template["Resources"]

    def condition(self, name: str) -> bool:
        return bool(self(self.conditions[name]))

    def __call__(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self(x) for x in node) if v is not self.NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) != 1:
            items = ((k, self(v)) for k, v in node.items())
            return {k: v for k, v in items if v is not self.NO_VALUE}
        ((key, arg),) = node.items()
        if key == "Ref":
            if arg == "AWS::NoValue":
                return self.NO_VALUE
            if arg in self.resources:
                return f"<{arg}>"
            return self.values[arg]
        if key == "Fn::GetAtt":
            return f"arn:aws:dynamodb:eu-west-1:123456789012:table/<{arg[0]}>"
        if key == "Fn::If":
            return self(arg[1] if self.condition(arg[0]) else arg[2])
        if key == "Condition":
            return self.condition(arg)
        if key == "Fn::Equals":
            return self(arg[0]) == self(arg[1])
        if key == "Fn::Not":
            return not self(arg[0])
        if key == "Fn::And":
            return all(self(a) for a in arg)
        if key == "Fn::Or":
            return any(self(a) for a in arg)
        if key == "Fn::Join":
            return arg[0].join(self(arg[1]))
        if key == "Fn::Split":
            return self(arg[1]).split(arg[0])
        if key == "Fn::Select":
            return self(arg[1])[int(arg[0])]
        if key == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self(arg[1]))

            def sub(match: re.Match[str]) -> str:
                name = match.group(1)
                if name in variables:
                    return str(variables[name])
                if "." in name:
                    return str(self({"Fn::GetAtt": name.split(".", 1)}))
                return str(self({"Ref": name}))

            return re.sub(r"\$\{([^}!]+)\}", sub, text)
        return {key: self(arg)}


def _policy(template: dict[str, Any], policy: str, **parameters: str) -> dict[str, Any]:
    """The policy's statements by Sid, as CloudFormation creates them for these parameters."""
    document = template["Resources"][policy]["Properties"]["PolicyDocument"]
    statements: list[dict[str, Any]] = _Evaluator(template, parameters)(document)["Statement"]
    for statement in statements:
        for key in ("Action", "Resource"):
            if isinstance(statement[key], str):
                statement[key] = [statement[key]]
    return {s["Sid"]: s for s in statements}


KEYS_ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/<KeysTable>"
USAGE_ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/<UsageTable>"
RESPONSES_ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/<ResponsesTable>"


def test_each_function_gets_only_the_policies_it_needs(translated: dict[str, Any]) -> None:
    def attached(function: str) -> list[Any]:
        role = translated["Resources"][f"{function}Role"]["Properties"]
        assert "Policies" not in role  # no inline policies besides the managed ones
        return [arn for arn in role["ManagedPolicyArns"] if isinstance(arn, dict)]

    assert attached("StreamFunction") == [
        {"Ref": "GatewayReadPolicy"},
        {"Ref": "GatewayChatPolicy"},
    ]
    assert attached("ApiFunction") == [{"Ref": "GatewayReadPolicy"}]


def test_dynamodb_access_is_exactly_what_the_gateway_uses(template: dict[str, Any]) -> None:
    read = _policy(template, "GatewayReadPolicy")
    assert set(read) == {"ReadKeys", "ReadUsage", "StoredResponses", "ReadKeyMacSecrets"}
    assert set(read["ReadKeys"]["Action"]) == {"dynamodb:GetItem", "dynamodb:Query"}
    assert read["ReadKeys"]["Resource"] == [KEYS_ARN, f"{KEYS_ARN}/index/*"]
    assert set(read["ReadUsage"]["Action"]) == {"dynamodb:GetItem", "dynamodb:Query"}
    assert read["ReadUsage"]["Resource"] == [USAGE_ARN, f"{USAGE_ARN}/index/*"]
    assert set(read["StoredResponses"]["Action"]) == {
        "dynamodb:Query",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
    }
    assert read["StoredResponses"]["Resource"] == [RESPONSES_ARN]

    chat = _policy(template, "GatewayChatPolicy")
    assert set(chat) == {"RecordUsage", "StoreResponses"}
    assert chat["StoreResponses"]["Action"] == ["dynamodb:PutItem"]
    assert chat["StoreResponses"]["Resource"] == [RESPONSES_ARN]
    assert set(chat["RecordUsage"]["Action"]) == {
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:ConditionCheckItem",  # TransactWriteItems' ConditionCheck entries
    }
    assert chat["RecordUsage"]["Resource"] == [USAGE_ARN]


def test_optional_grants_name_only_the_configured_resources(template: dict[str, Any]) -> None:
    parameters = {
        "ModelsConfigSsmParameter": "/gateway/models",
        "UpstreamSecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:gw-AbCdEf",
        "SageMakerEndpointNames": "qwen-endpoint,llama-endpoint",
    }
    read = _policy(template, "GatewayReadPolicy", **parameters)
    assert read["ReadModelsConfig"]["Action"] == ["ssm:GetParameter"]
    assert read["ReadModelsConfig"]["Resource"] == [
        "arn:aws:ssm:eu-west-1:123456789012:parameter/gateway/models"
    ]
    chat = _policy(template, "GatewayChatPolicy", **parameters)
    assert chat["ReadUpstreamCredentials"]["Action"] == ["secretsmanager:GetSecretValue"]
    assert chat["ReadUpstreamCredentials"]["Resource"] == [parameters["UpstreamSecretArn"]]
    assert set(chat["InvokeSageMakerEndpoints"]["Action"]) == {
        "sagemaker:InvokeEndpoint",
        "sagemaker:InvokeEndpointWithResponseStream",
    }
    assert chat["InvokeSageMakerEndpoints"]["Resource"] == [
        "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/qwen-endpoint",
        "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/llama-endpoint",
    ]
    # A parameter name without a leading slash; a JSON config wins over SSM (no grant).
    plain = _policy(template, "GatewayReadPolicy", ModelsConfigSsmParameter="gateway-models")
    assert plain["ReadModelsConfig"]["Resource"] == [
        "arn:aws:ssm:eu-west-1:123456789012:parameter/gateway-models"
    ]
    both = _policy(
        template, "GatewayReadPolicy", ModelsConfig='{"models": []}', ModelsConfigSsmParameter="x"
    )
    assert "ReadModelsConfig" not in both


def test_the_key_mac_secrets_are_one_readable_parameter(
    template: dict[str, Any], translated: dict[str, Any]
) -> None:
    read = _policy(template, "GatewayReadPolicy")
    assert read["ReadKeyMacSecrets"]["Action"] == ["ssm:GetParameter"]
    assert read["ReadKeyMacSecrets"]["Resource"] == [
        "arn:aws:ssm:eu-west-1:123456789012:parameter/gpu-gateway/key-mac-secrets"
    ]
    assert "DecryptKeyMacSecrets" not in read  # aws/ssm: no grant needed
    key = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    custom = _policy(
        template, "GatewayReadPolicy", KeyMacSecretsParameter="/gw/mac", KeyMacSecretsKmsKeyArn=key
    )
    assert custom["ReadKeyMacSecrets"]["Resource"] == [
        "arn:aws:ssm:eu-west-1:123456789012:parameter/gw/mac"
    ]
    assert custom["DecryptKeyMacSecrets"] == {
        "Sid": "DecryptKeyMacSecrets", "Effect": "Allow", "Action": ["kms:Decrypt"],
        "Resource": [key],
    }  # fmt: skip
    # Only the two functions that authenticate are told the parameter's name.
    for name, resource in _resources(translated, "AWS::Lambda::Function").items():
        env = resource["Properties"].get("Environment", {}).get("Variables", {})
        if name in ("StreamFunction", "ApiFunction"):
            assert env["KEY_MAC_SECRETS_PARAMETER"] == {"Ref": "KeyMacSecretsParameter"}
            assert env["KEY_MAC_SECRETS_REVISION"] == {"Ref": "KeyMacSecretsRevision"}
        else:
            assert "KEY_MAC_SECRETS_PARAMETER" not in env, name


def test_five_sagemaker_endpoint_slots(template: dict[str, Any]) -> None:
    names = [f"e{i}" for i in range(5)]
    chat = _policy(template, "GatewayChatPolicy", SageMakerEndpointNames=",".join(names))
    resources = chat["InvokeSageMakerEndpoints"]["Resource"]
    assert [r.rsplit("/", 1)[1] for r in resources] == names


def _all_statements(translated: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for policy in _resources(translated, "AWS::IAM::ManagedPolicy").values():
        yield from _walk_statements(policy["Properties"]["PolicyDocument"]["Statement"])
    for role in _resources(translated, "AWS::IAM::Role").values():
        for inline in role["Properties"].get("Policies", []):
            yield from _walk_statements(inline["PolicyDocument"]["Statement"])


def _walk_statements(node: Any) -> Iterator[dict[str, Any]]:
    """Every statement, including both branches of any Fn::If."""
    if isinstance(node, list):
        for item in node:
            yield from _walk_statements(item)
    elif isinstance(node, dict) and "Fn::If" in node:
        yield from _walk_statements(node["Fn::If"][1:])
    elif isinstance(node, dict) and "Effect" in node:
        yield node


def _strings(node: Any) -> list[Any]:
    return node if isinstance(node, list) else [node]


def test_no_wildcard_grants(translated: dict[str, Any]) -> None:
    statements = list(_all_statements(translated))
    assert statements
    for statement in statements:
        actions = _strings(statement["Action"])
        assert "*" not in actions, statement
        if any(str(a).startswith("dynamodb:") for a in actions):
            assert not any("*" in str(a) for a in actions), statement
            assert "*" not in _strings(statement["Resource"]), statement
    for role in _resources(translated, "AWS::IAM::Role").values():
        managed = role["Properties"]["ManagedPolicyArns"]
        assert all(isinstance(arn, dict) or arn in MANAGED_POLICIES.values() for arn in managed)


def test_layer_paths_match_the_layer_builder(template: dict[str, Any]) -> None:
    from tests.test_layers import bt

    layer = template["Resources"]["TokenizersLayer"]["Properties"]
    assert (TEMPLATE_PATH.parent / layer["ContentUri"]).resolve() == bt.DEFAULT_OUT
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    # the layer's content is mounted at /opt
    assert env["TOKENIZERS_DIR"] == "/opt/tokenizers"
    condition, bundled, _ = env["MODELS_CONFIG_FILE"]["Fn::If"]
    assert condition == "UsesBundledModelsConfig"
    assert bundled == "/opt/gateway/models.json"


# ------------------------------------------------ hardening (issue 15, docs/SECURITY.md)


def _stage(translated: dict[str, Any]) -> dict[str, Any]:
    (stage,) = _resources(translated, "AWS::ApiGateway::Stage").values()
    props: dict[str, Any] = stage["Properties"]
    return props


def test_stage_throttling_comes_from_parameters(
    translated: dict[str, Any], template: dict[str, Any]
) -> None:
    settings = {
        (s["ResourcePath"], s["HttpMethod"]): s for s in _stage(translated)["MethodSettings"]
    }
    everything = settings[("/*", "*")]
    assert everything["ThrottlingRateLimit"] == {"Ref": "ApiThrottlingRateLimit"}
    assert everything["ThrottlingBurstLimit"] == {"Ref": "ApiThrottlingBurstLimit"}
    (api,) = _resources(translated, "AWS::ApiGateway::RestApi").values()
    paths = api["Properties"]["Body"]["paths"]
    chat = {k: v for k, v in settings.items() if k != ("/*", "*")}

    # Method settings name real routes ("/" + the path with "/" as "~1"): both chat routes.
    def route(path: str) -> str:
        assert path.startswith("/~1")
        return path[1:].replace("~1", "/")

    assert {(route(p), m) for p, m in chat} == {(path, "POST") for path in METERED_ROUTES}
    for (path, method), setting in chat.items():
        assert method.lower() in paths[route(path)]
        assert setting["ThrottlingRateLimit"] == {"Ref": "ChatThrottlingRateLimit"}
        assert setting["ThrottlingBurstLimit"] == {"Ref": "ChatThrottlingBurstLimit"}
        assert setting["MetricsEnabled"] is True
    params = template["Parameters"]
    for name in ("Api", "Chat"):
        rate, burst = params[f"{name}ThrottlingRateLimit"], params[f"{name}ThrottlingBurstLimit"]
        assert rate["Type"] == burst["Type"] == "Number"
        assert rate["MinValue"] >= 1 and burst["Default"] >= rate["Default"]
    assert (
        params["ChatThrottlingRateLimit"]["Default"] <= params["ApiThrottlingRateLimit"]["Default"]
    )


def test_access_logs_are_json_lines_without_secrets(
    translated: dict[str, Any], template: dict[str, Any]
) -> None:
    import json

    setting = _stage(translated)["AccessLogSetting"]
    fields = json.loads(setting["Format"])
    assert {"requestId", "ip", "httpMethod", "resourcePath", "status", "xrayTraceId"} <= set(fields)
    assert all(re.fullmatch(r"\$context\.[A-Za-z.]+", v) for v in fields.values()), fields
    # Nothing that could carry the key or a prompt: no header, query string or body.
    lowered = setting["Format"].lower()
    for forbidden in ("header", "querystring", "authorization", "$input", "$method", "body"):
        assert forbidden not in lowered
    group = template["Resources"]["ApiAccessLogGroup"]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    for create in ("false", "true"):
        evaluated = _Evaluator(template, {"CreateApiGatewayLogsRole": create})
        destination = evaluated(setting["DestinationArn"])
        assert destination.endswith("/<ApiAccessLogGroup>"), destination


def test_account_logs_role_is_created_only_on_request(
    translated: dict[str, Any], template: dict[str, Any]
) -> None:
    resources = template["Resources"]
    for name in ("ApiGatewayLogsRole", "ApiGatewayAccount"):
        assert resources[name]["Condition"] == "CreatesApiGatewayLogsRole"
    assert not _Evaluator(template, {}).condition("CreatesApiGatewayLogsRole")
    assert _Evaluator(template, {"CreateApiGatewayLogsRole": "true"}).condition(
        "CreatesApiGatewayLogsRole"
    )
    role = resources["ApiGatewayLogsRole"]["Properties"]
    (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "apigateway.amazonaws.com"}
    assert role["ManagedPolicyArns"] == [
        {
            "Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/"
            "AmazonAPIGatewayPushToCloudWatchLogs"
        }
    ]
    # When the stack sets the account's role, the stage refers to it (so waits for it).
    condition, when_created, otherwise = _stage(translated)["AccessLogSetting"]["DestinationArn"][
        "Fn::If"
    ]
    assert condition == "CreatesApiGatewayLogsRole"
    assert {"Ref": "ApiGatewayAccount"} in when_created["Fn::Select"][1]
    assert "ApiGatewayAccount" not in str(otherwise)


@pytest.mark.parametrize(
    ("function", "parameter"),
    [
        ("StreamFunction", "StreamFunctionReservedConcurrency"),
        ("ApiFunction", "ApiFunctionReservedConcurrency"),
    ],
)
def test_reserved_concurrency_is_optional(
    translated: dict[str, Any], template: dict[str, Any], function: str, parameter: str
) -> None:
    value = translated["Resources"][function]["Properties"]["ReservedConcurrentExecutions"]
    assert template["Parameters"][parameter]["Default"] == 0
    assert _Evaluator(template, {})(value) is _Evaluator.NO_VALUE  # default: none reserved
    assert _Evaluator(template, {parameter: "0"})(value) is _Evaluator.NO_VALUE
    assert _Evaluator(template, {parameter: "40"})(value) == "40"


WEB_ACL = "arn:aws:wafv2:eu-west-1:123456789012:regional/webacl/gateway/1234abcd-12ab-34cd-56ef"


def test_waf_association_is_conditional_on_a_regional_web_acl(
    translated: dict[str, Any], template: dict[str, Any]
) -> None:
    association = translated["Resources"]["ApiWebAclAssociation"]
    assert association["Type"] == "AWS::WAFv2::WebACLAssociation"
    assert association["Condition"] == "HasWebAcl"
    props = association["Properties"]
    assert props["WebACLArn"] == {"Ref": "WebAclArn"}
    (stage_id,) = _resources(translated, "AWS::ApiGateway::Stage")
    assert props["ResourceArn"]["Fn::Sub"] == (
        "arn:${AWS::Partition}:apigateway:${AWS::Region}::/restapis/${Api}/stages/"
        f"${{{stage_id}}}"
    )
    assert not _Evaluator(template, {}).condition("HasWebAcl")
    assert _Evaluator(template, {"WebAclArn": WEB_ACL}).condition("HasWebAcl")
    pattern = template["Parameters"]["WebAclArn"]["AllowedPattern"]
    assert re.fullmatch(pattern, WEB_ACL)
    assert re.fullmatch(pattern, "")
    # CloudFront-scope ("global") web ACLs cannot be associated with a regional stage.
    assert not re.fullmatch(pattern, WEB_ACL.replace(":regional/", ":global/"))


def test_docs_toggle_reaches_the_settings(
    translated: dict[str, Any], template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.settings import Settings

    env = translated["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert env["DOCS_ENABLED"] == {"Ref": "EnableApiDocs"}
    parameter = template["Parameters"]["EnableApiDocs"]
    assert parameter["AllowedValues"] == ["true", "false"]
    for value in parameter["AllowedValues"]:
        monkeypatch.setenv("DOCS_ENABLED", value)
        assert Settings().docs_enabled is (value == "true")


def test_stream_timeout_covers_the_upstream_timeout(template: dict[str, Any]) -> None:
    # 900 s is API Gateway's and Lambda's 15-minute ceiling (docs/DEPLOY.md, "Timeouts").
    props = template["Resources"]["StreamFunction"]["Properties"]
    assert props["Timeout"] == 900
    assert template["Parameters"]["UpstreamReadTimeoutSeconds"]["MaxValue"] < props["Timeout"]
    for event in props["Events"].values():
        assert event["Properties"]["TimeoutInMillis"] == props["Timeout"] * 1000


def test_api_gateway_errors_use_openai_error_format(translated: dict[str, Any]) -> None:
    import json

    (api,) = _resources(translated, "AWS::ApiGateway::RestApi").values()
    responses = api["Properties"]["Body"]["x-amazon-apigateway-gateway-responses"]
    assert set(responses) == {"THROTTLED", "WAF_FILTERED", "DEFAULT_4XX", "DEFAULT_5XX"}
    for kind, response in responses.items():
        template = response["responseTemplates"]["application/json"]
        # $context.error.messageString is the message already JSON-quoted by API Gateway.
        body = json.loads(template.replace("$context.error.messageString", '"Forbidden"'))
        assert set(body) == {"error"}, kind
        assert set(body["error"]) == {"message", "type", "param", "code"}, kind
    throttled = responses["THROTTLED"]
    assert throttled["statusCode"] == "429"
    assert throttled["responseParameters"] == {"gatewayresponse.header.Retry-After": "'1'"}
    error = json.loads(throttled["responseTemplates"]["application/json"])["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert responses["WAF_FILTERED"]["statusCode"] == "403"
