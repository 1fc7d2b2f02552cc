"""The templates agree with the code: tables, settings in the user data, IAM actions per role."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.settings import FIELDS, PREFIX, load_settings
from infra import check
from media.aws_lambda import config_from_env
from media.keys import upload_key, video_prefix
from media.mediaconvert import job_request
from media.model import DEFAULT_LADDER
from storage.dynamodb import keys, table_definitions
from tests.infra.expectations import (
    CODE,
    GATEWAY_MEDIA,
    GATEWAY_NOTIFY,
    LAMBDA_MEDIA,
    PROVISIONING,
    ROLES,
    STAGE,
    STORE,
    WORKER_MEDIA,
    cli,
)
from tests.infra.expectations import script as user_data_script

PREFIX_OF_STAGE = f"moosic-{STAGE}-"


def _table_resources() -> dict[str, dict[str, Any]]:
    resolver = check.resolver_for("data", STAGE)
    tables = {}
    for body in resolver.template["Resources"].values():
        if body["Type"] == "AWS::DynamoDB::Table":
            props = resolver.value(body["Properties"])
            tables[props["TableName"]] = props
    return tables


def _normal(items: list[dict[str, Any]] | None) -> list[str]:
    return sorted(check.json_text(i) for i in items or [])


# -- DynamoDB --------------------------------------------------------------------------------


def test_every_table_of_the_code_and_no_other() -> None:
    assert set(_table_resources()) == {d["TableName"] for d in table_definitions(PREFIX_OF_STAGE)}


@pytest.mark.parametrize("table", keys.TABLES)
def test_table_matches_its_definition(table: str) -> None:
    definition = {d["TableName"]: d for d in table_definitions(PREFIX_OF_STAGE)}[
        PREFIX_OF_STAGE + table
    ]
    props = _table_resources()[definition["TableName"]]
    assert props["KeySchema"] == definition["KeySchema"]
    assert _normal(props["AttributeDefinitions"]) == _normal(definition["AttributeDefinitions"])
    assert props["BillingMode"] == definition["BillingMode"] == "PAY_PER_REQUEST"
    assert _normal(props.get("LocalSecondaryIndexes")) == _normal(
        definition.get("LocalSecondaryIndexes")
    )
    assert _normal(props.get("GlobalSecondaryIndexes")) == _normal(
        definition.get("GlobalSecondaryIndexes")
    )
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_ttl_where_create_tables_turns_it_on() -> None:
    # storage.dynamodb.schema.create_tables turns TTL on for these tables, on PURGE_ATTRIBUTE.
    source = Path(check.ROOT, "storage/dynamodb/schema.py").read_text()
    ttl_tables = re.search(r"for table in \(([^)]*)\):\s*\n\s*name = table_name", source)
    assert ttl_tables is not None, "create_tables no longer lists its TTL tables as expected"
    names = {getattr(keys, n.strip().removeprefix("keys.")) for n in ttl_tables.group(1).split(",")}
    assert names == {keys.REFRESH_TOKENS, keys.FOLLOWS}
    for name, props in _table_resources().items():
        table = name.removeprefix(PREFIX_OF_STAGE)
        expected = (
            {"AttributeName": keys.PURGE_ATTRIBUTE, "Enabled": True} if table in names else None
        )
        assert props.get("TimeToLiveSpecification") == expected, name


# -- settings the nodes start with -----------------------------------------------------------


@pytest.fixture(scope="module")
def private_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("cloudfront") / "key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _environment(script: str, key_file: Path) -> dict[str, str]:
    """The env file the script writes, with its boot-time secrets stood in for."""
    written = check.moosic_settings(script)
    key_path = written[PREFIX + "CLOUDFRONT_PRIVATE_KEY_FILE"]
    assert re.search(rf"^secret \S+ > {re.escape(key_path)}$", script, re.MULTILINE), (
        "the script must write the CloudFront private key where the settings point"
    )
    environ = {k: re.sub(r"\$\(secret [^)]*\)", "s" * 48, v) for k, v in written.items()}
    environ[PREFIX + "CLOUDFRONT_PRIVATE_KEY_FILE"] = str(key_file)
    return environ


@pytest.mark.parametrize("launch_template", ["GatewayLaunchTemplate", "WorkerLaunchTemplate"])
def test_user_data_sets_only_known_settings(launch_template: str) -> None:
    script = user_data_script(launch_template)
    names = check.all_moosic_names(script)
    assert names, "no MOOSIC_* settings found"
    unknown = {n for n in names if n.removeprefix(PREFIX) not in FIELDS}
    assert not unknown, f"not in gateway.settings.FIELDS: {sorted(unknown)}"
    assert set(check.moosic_settings(script)) == names, "every setting is one line of the file"


DEPLOYMENT_SETTINGS = {
    "STORE",
    "DYNAMODB_REGION",
    "DYNAMODB_TABLE_PREFIX",
    "DAX_ENDPOINT",
    "REDIS_URL",
    "JWT_SECRET",
    "HOST",
    "PORT",
    "SHUTDOWN_TIMEOUT",
    "ALLOWED_COUNTRIES",
    "MEDIA_BACKEND",
    "MEDIA_REGION",
    "MEDIA_BUCKET",
    "MEDIA_MEDIACONVERT_ROLE",
    "MEDIA_MEDIACONVERT_QUEUE",
    "CLOUDFRONT_DOMAIN",
    "CLOUDFRONT_KEY_ID",
    "CLOUDFRONT_PRIVATE_KEY_FILE",
}
"""What a node on AWS must set: everything whose default is the embedded, one-machine setup."""


@pytest.mark.parametrize("launch_template", ["GatewayLaunchTemplate", "WorkerLaunchTemplate"])
def test_user_data_settings_start_a_node(launch_template: str, private_key_file: Path) -> None:
    script = user_data_script(launch_template)
    environ = _environment(script, private_key_file)
    missing = {s for s in DEPLOYMENT_SETTINGS if PREFIX + s not in environ}
    assert not missing, f"the deployment needs {sorted(missing)}"
    settings = load_settings(environ)  # raises SettingsError on any bad or missing value
    exports = check.stack_exports("compute", STAGE)
    assert settings.storage.store == "dynamodb"
    assert settings.storage.dynamodb_table_prefix == exports[f"{STAGE}-data-TablePrefix"]
    assert settings.storage.dynamodb_region == check.PSEUDO["AWS::Region"]
    assert settings.storage.dax_endpoint == exports[f"{STAGE}-data-DaxEndpoint"]
    assert settings.storage.dax_endpoint.startswith("daxs://")
    assert settings.redis.redis_url is not None
    assert settings.redis.redis_url.startswith("rediss://")
    assert exports[f"{STAGE}-data-RedisEndpoint"] in settings.redis.redis_url
    assert settings.media.media_backend == "aws"
    assert settings.media.media_bucket == exports[f"{STAGE}-media-BucketName"]
    assert settings.media.media_mediaconvert_role == exports[f"{STAGE}-media-MediaConvertRoleArn"]
    assert settings.media.media_mediaconvert_queue == exports[f"{STAGE}-media-MediaConvertQueueArn"]
    assert settings.media.cloudfront_domain == exports[f"{STAGE}-edge-PlaybackHost"]
    assert settings.media.cloudfront_key_id == exports[f"{STAGE}-edge-PlaybackKeyId"]
    assert settings.guard.countries_label == exports[f"{STAGE}-edge-AllowedCountries"]
    assert settings.server.port == int(exports[f"{STAGE}-network-GatewayPort"])
    if launch_template == "GatewayLaunchTemplate":
        assert settings.server.host == "0.0.0.0"
        assert settings.media.media_sqs_url is None, "gateway nodes run no media worker"
        assert [str(n) for n in settings.guard.trusted_proxies] == [
            exports[f"{STAGE}-network-VpcCidr"]
        ]
    else:
        assert settings.media.media_sqs_url == exports[f"{STAGE}-media-QueueUrl"]


def test_service_runs_the_gateway_with_the_env_file() -> None:
    for launch_template, unit in [
        ("GatewayLaunchTemplate", "moosic-gateway"),
        ("WorkerLaunchTemplate", "moosic-media-worker"),
    ]:
        script = user_data_script(launch_template)
        assert "cat > /etc/moosic/gateway.env <<'ENV'" in script
        assert f"cat > /etc/systemd/system/{unit}.service <<'UNIT'" in script
        assert "EnvironmentFile=/etc/moosic/gateway.env" in script
        assert "ExecStart=/opt/moosic/venv/bin/python -m gateway" in script
        assert "KillSignal=SIGTERM" in script
        assert f"systemctl enable --now {unit}.service" in script


def test_alb_timing_fits_the_gateway() -> None:
    compute = check.resolver_for("compute", STAGE)
    resources = compute.template["Resources"]

    def attribute(resource: str, prop: str, key: str) -> int:
        pairs = compute.value(resources[resource]["Properties"][prop])
        value = str({p["Key"]: p["Value"] for p in pairs}[key])
        return {"true": 1, "false": 0}.get(value) if value in {"true", "false"} else int(value)  # type: ignore[return-value]

    idle = attribute("Alb", "LoadBalancerAttributes", "idle_timeout.timeout_seconds")
    delay = attribute(
        "GatewayTargets", "TargetGroupAttributes", "deregistration_delay.timeout_seconds"
    )
    settings = check.moosic_settings(user_data_script("GatewayLaunchTemplate"))
    heartbeat = float(settings[PREFIX + "WS_HEARTBEAT"])
    longpoll = FIELDS["LONGPOLL_MAX_SECONDS"]
    assert longpoll[0] == "longpoll_max_seconds"
    assert idle > heartbeat
    assert idle > 25, "long polls wait MOOSIC_LONGPOLL_MAX_SECONDS (25 s by default)"
    assert delay >= float(settings[PREFIX + "SHUTDOWN_TIMEOUT"])
    assert attribute("GatewayTargets", "TargetGroupAttributes", "stickiness.enabled") == 0
    health = compute.value(resources["GatewayTargets"]["Properties"])
    assert health["HealthCheckPath"] == "/readyz"
    hooks = resources["GatewayGroup"]["Properties"]["LifecycleHookSpecificationList"]
    assert [h["LifecycleTransition"] for h in hooks] == ["autoscaling:EC2_INSTANCE_TERMINATING"]
    script = user_data_script("GatewayLaunchTemplate")
    assert f"--lifecycle-hook-name {hooks[0]['LifecycleHookName']}" in script


def test_lambda_environment_configures_the_handler() -> None:
    compute = check.resolver_for("compute", STAGE)
    function = compute.value(compute.template["Resources"]["UploadFunction"]["Properties"])
    environ = function["Environment"]["Variables"]
    assert all(k.startswith(PREFIX) and k.removeprefix(PREFIX) in FIELDS for k in environ)
    config = config_from_env(environ)  # KeyError on a missing required variable
    exports = check.stack_exports("compute", STAGE)
    assert config.bucket == exports[f"{STAGE}-media-BucketName"]
    assert config.queue_url == exports[f"{STAGE}-media-QueueUrl"]
    assert config.mediaconvert_role == exports[f"{STAGE}-media-MediaConvertRoleArn"]
    assert config.mediaconvert_queue == exports[f"{STAGE}-media-MediaConvertQueueArn"]
    assert function["Handler"] == "media.aws_lambda.handler"


# -- IAM: each role gets the actions its code calls, and nothing else ------------------------


def test_every_aws_call_is_a_known_operation_and_runs_under_a_role() -> None:
    assert CODE.calls, "the scan found no AWS calls at all"
    assigned = {
        id(c)
        for group in (STORE, GATEWAY_MEDIA, GATEWAY_NOTIFY, WORKER_MEDIA, LAMBDA_MEDIA)
        for c in group
    }
    orphans = [
        f"{c.module}:{c.line} {c.service}.{c.method}"
        for c in CODE.calls
        if id(c) not in assigned and (c.module, c.function) not in PROVISIONING
    ]
    assert not orphans, f"AWS calls no role is checked for: {orphans}"
    services = {c.service for c in CODE.calls}
    assert {"dynamodb", "dax", "s3", "sqs", "mediaconvert", "rekognition", "ses", "sns"} <= services


def _role_documents(stack: str, role: str) -> list[dict[str, Any]]:
    """The role's inline policies and the managed policies it attaches (from any stack)."""
    resolver = check.resolver_for(stack, STAGE)
    props = resolver.template["Resources"][role]["Properties"]
    documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
    for arn in props.get("ManagedPolicyArns", []):
        assert set(arn) == {"Fn::ImportValue"}, f"{role}: managed policies come from our stacks"
        name = resolver.value(arn["Fn::ImportValue"])
        owner, logical = _managed_policy(name)
        documents.append(check.load(owner)["Resources"][logical]["Properties"]["PolicyDocument"])
    return documents


def _managed_policy(export: str) -> tuple[str, str]:
    for stack in check.STACKS:
        template = check.load(stack)
        resolver = check.Resolver(template, {"Stage": STAGE})
        for output in template.get("Outputs", {}).values():
            if "Export" in output and resolver.value(output["Export"]["Name"]) == export:
                ref = output["Value"]["Ref"]
                assert template["Resources"][ref]["Type"] == "AWS::IAM::ManagedPolicy"
                return stack, ref
    raise AssertionError(f"no stack exports {export}")


@pytest.mark.parametrize("who", sorted(ROLES))
def test_role_allows_exactly_what_its_code_calls(who: str) -> None:
    stack, role, expected = ROLES[who]
    granted = check.allowed_actions(_role_documents(stack, role))
    assert not {a for a in granted if "*" in a}, f"{role}: wildcard actions"
    assert expected - granted == set(), f"{role} lacks {sorted(expected - granted)}"
    assert granted - expected == set(), (
        f"{role} allows more than its code calls: {sorted(granted - expected)}"
    )


def test_user_data_calls_are_aws_cli_calls_we_map() -> None:
    gateway = cli("GatewayLaunchTemplate")
    assert {
        "s3:GetObject",
        "secretsmanager:GetSecretValue",
        "cloudwatch:PutMetricData",
        "autoscaling:DescribeAutoScalingInstances",
        "elasticloadbalancing:DescribeTargetHealth",
        "autoscaling:CompleteLifecycleAction",
    } == gateway
    assert cli("WorkerLaunchTemplate") == {"s3:GetObject", "secretsmanager:GetSecretValue"}


def _statement_grants(
    documents: list[dict[str, Any]], action: str, arn: str, resolver: check.Resolver
) -> bool:
    for document in documents:
        for statement in check.statements(resolver.value(document)):
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else actions
            resources = statement["Resource"]
            resources = [resources] if isinstance(resources, str) else resources
            if (
                statement["Effect"] == "Allow"
                and action in actions
                and any(fnmatch.fnmatchcase(arn, r) for r in resources)
            ):
                return True
    return False


def test_mediaconvert_role_reads_and_writes_the_keys_of_the_job() -> None:
    media = check.resolver_for("media", STAGE)
    bucket = media.value({"Ref": "MediaBucket"})
    owner, video = "01HZX0OWNER00000000000000", "01HZX0VIDEO00000000000000"
    request = job_request(
        role_arn="role",
        queue_arn=None,
        input_uri=f"s3://{bucket}/{upload_key(owner, video, 'video/mp4').key}",
        output_prefix=f"s3://{bucket}/{video_prefix(owner, video)}",
        ladder=DEFAULT_LADDER,
        segment_seconds=4,
        watermark_uri=f"s3://{bucket}/brand/watermark.png",
        watermark_size=(100, 30),
        video_id=video,
        owner=owner,
        submitted_ms=1_700_000_000_000,
    )
    text = check.json_text(request)
    reads = re.findall(r'"(?:FileInput|ImageInserterInput)": "s3://([^"]+)"', text)
    writes = re.findall(r'"Destination": "s3://([^"]+)"', text)
    assert reads
    assert writes
    documents = _role_documents("media", "MediaConvertRole")
    for key in reads:
        assert _statement_grants(documents, "s3:GetObject", f"arn:aws:s3:::{key}", media), key
    for key in writes:
        assert _statement_grants(documents, "s3:PutObject", f"arn:aws:s3:::{key}*", media), key
    assert check.allowed_actions(documents) == {"s3:GetObject", "s3:PutObject"}


def test_the_alb_keeps_metrics_and_the_server_api_inside() -> None:
    from gateway.http.server_api import PREFIX as SERVER_API

    compute = check.resolver_for("compute", STAGE)
    rules = [
        compute.value(r["Properties"])
        for r in compute.template["Resources"].values()
        if r["Type"] == "AWS::ElasticLoadBalancingV2::ListenerRule"
    ]
    blocked = [
        value
        for rule in rules
        if rule["Actions"][0]["Type"] == "fixed-response"
        and rule["Actions"][0]["FixedResponseConfig"]["StatusCode"] == "404"
        for condition in rule["Conditions"]
        if condition["Field"] == "path-pattern"
        for value in condition["PathPatternConfig"]["Values"]
    ]
    for path in ("/metrics", SERVER_API + "/publish", SERVER_API + "/admin/"):
        assert any(fnmatch.fnmatchcase(path, pattern) for pattern in blocked), path
    assert not any(fnmatch.fnmatchcase("/v1/feed", pattern) for pattern in blocked)
