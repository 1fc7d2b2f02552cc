"""The stacks deployed to moto's CloudFormation, checked through the services' own APIs.

moto skips resource types it does not model; :func:`infra.check.moto_subset` leaves those out
(and what refers to them) before deploying, and ``EXPECTED_LEFT_OUT`` pins what that is, so a
change that makes moto skip something more fails here. infra/README.md lists the same.
moto also drops some properties of types it does model; those are checked against the
templates in test_code_agreement.py, never here.
"""

from __future__ import annotations

import ast
import base64
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, unquote_plus

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.settings import PREFIX, load_settings
from infra import check
from media.aws_lambda import config_from_env
from media.keys import upload_key, video_prefix
from storage.dynamodb import table_definitions
from tests.infra.conftest import DOMAIN, Deployment
from tests.infra.expectations import ROLES, STAGE

EXPECTED_LEFT_OUT: dict[str, tuple[set[str], set[str]]] = {
    # stack: (types moto does not model, resources referring to them or to an attribute moto
    # does not implement)
    "network": (set(), set()),
    "data": (
        {"DaxCluster", "DaxParameters", "DaxSubnetGroup", "Redis", "RedisAuthToken"}
        | {"RedisSubnetGroup"},
        set(),
    ),
    "media": ({"MediaConvertQueue", "MediaQueuePolicy"}, set()),
    "edge": (
        {"Distribution", "MediaOriginAccess", "PlaybackKey", "PlaybackKeyGroup"}
        | {"HlsCachePolicy", "ApiReadCachePolicy", "ApiReadOriginRequestPolicy"}
        | {"MediaBucketPolicy"},
        {"ApiRecord"},
    ),
    "compute": (
        {"GatewayCpuScaling", "GatewayConnectionsScaling", "WorkerQueueScaling", "JwtSecret"}
        | {"GatewayRegionLinkPolicy"},
        {"OriginRecord"},
    ),
    "analytics": (
        {"ClickstreamDelivery", "AnalyticsDatabase", "ClickstreamTable", "AnalyticsWorkGroup"},
        set(),
    ),
    "observability": (
        {"AlarmEmailSubscription", "MailConfiguration", "MailEvents", "MailIdentity"}
        | {"ConnectionsPerNodeHigh", "RedisCircuitOpen", "StoreUnhealthy", "Gateway5xx"}
        | {"UnhealthyNodes", "GatewayCpuHigh", "StoreThrottled", "MediaDeadLetters"}
        | {"MediaBacklog", "UploadFunctionErrors"}
        | {"DeliveryLagBurnFast", "DeliveryLagBurnSlow", "StoreLatencyHigh"}
        | {"SlowConsumerClosesHigh", "ClickstreamRefusals", "GapEventsSkipped"},
        {"MailDkimRecords"},
    ),
}


def test_every_stack_is_created(deployed: Deployment) -> None:
    assert deployed.statuses == dict.fromkeys(check.STACKS, "CREATE_COMPLETE")


@pytest.mark.parametrize("stack", check.STACKS)
def test_what_moto_cannot_create_is_what_the_readme_lists(deployed: Deployment, stack: str) -> None:
    subset = deployed.subsets[stack]
    unmodelled, dependent = EXPECTED_LEFT_OUT[stack]
    assert (subset.unmodelled, subset.dependent) == (unmodelled, dependent)
    readme = (check.ROOT / "infra" / "README.md").read_text()
    for name in unmodelled | dependent:
        assert f"`{name}`" in readme, f"infra/README.md does not list {stack}'s {name}"


# -- network -------------------------------------------------------------------------------


def _vpc(deployed: Deployment) -> dict[str, Any]:
    vpc_id = deployed.exports()[f"{STAGE}-network-VpcId"]
    return dict(deployed.client("ec2").describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0])


def test_vpc_spans_two_zones_with_public_and_private_subnets(deployed: Deployment) -> None:
    ec2 = deployed.client("ec2")
    exports = deployed.exports()
    vpc = _vpc(deployed)
    assert vpc["CidrBlock"] == exports[f"{STAGE}-network-VpcCidr"] == "10.40.0.0/16"
    subnets = {
        s["SubnetId"]: s
        for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])[
            "Subnets"
        ]
    }
    public = exports[f"{STAGE}-network-PublicSubnetIds"].split(",")
    private = exports[f"{STAGE}-network-PrivateSubnetIds"].split(",")
    assert set(subnets) == set(public) | set(private)
    assert len({subnets[s]["AvailabilityZone"] for s in public}) == 2
    assert len({subnets[s]["AvailabilityZone"] for s in private}) == 2
    # moto keeps CloudFormation's subnet associations out of describe_route_tables: tables
    # are told apart by their routes (README, "What moto cannot check").
    tables = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])
    defaults = {
        t["RouteTableId"]: r
        for t in tables["RouteTables"]
        for r in t["Routes"]
        if r.get("DestinationCidrBlock") == "0.0.0.0/0"
    }
    to_internet = [t for t, r in defaults.items() if r.get("GatewayId", "").startswith("igw-")]
    through_nat = {t: r["NatGatewayId"] for t, r in defaults.items() if r.get("NatGatewayId")}
    assert len(to_internet) == 1
    assert len(through_nat) == 2
    nats = {n["NatGatewayId"]: n for n in ec2.describe_nat_gateways()["NatGateways"]}
    assert len(set(through_nat.values())) == 2, "one NAT gateway per zone"
    nat_subnets = {nats[n]["SubnetId"] for n in through_nat.values()}
    assert nat_subnets == set(public)
    endpoints = {
        e["ServiceName"]: e
        for e in ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])[
            "VpcEndpoints"
        ]
    }
    region = check.PSEUDO["AWS::Region"]
    assert set(endpoints) == {f"com.amazonaws.{region}.{s}" for s in ("s3", "dynamodb")}
    for endpoint in endpoints.values():
        assert endpoint["VpcEndpointType"] == "Gateway"
        assert sorted(endpoint["RouteTableIds"]) == sorted(through_nat)


def test_security_groups_chain_alb_to_nodes_to_data(deployed: Deployment) -> None:
    ec2 = deployed.client("ec2")
    exports = deployed.exports()
    groups = {
        g["GroupName"]: g
        for g in ec2.describe_security_groups(
            Filters=[{"Name": "vpc-id", "Values": [_vpc(deployed)["VpcId"]]}]
        )["SecurityGroups"]
    }
    alb = exports[f"{STAGE}-network-AlbSecurityGroupId"]
    nodes = exports[f"{STAGE}-network-GatewaySecurityGroupId"]
    workers = exports[f"{STAGE}-network-WorkerSecurityGroupId"]
    port = int(exports[f"{STAGE}-network-GatewayPort"])

    def sources(group: str) -> set[tuple[int, str]]:
        return {
            (p["FromPort"], pair["GroupId"])
            for p in groups[group]["IpPermissions"]
            for pair in p["UserIdGroupPairs"]
        }

    assert sources(f"moosic-{STAGE}-gateway") == {(port, alb)}
    assert sources(f"moosic-{STAGE}-redis") == {(6379, nodes), (6379, workers)}
    assert sources(f"moosic-{STAGE}-dax") == {(9111, nodes), (9111, workers)}
    assert groups[f"moosic-{STAGE}-media-worker"]["IpPermissions"] == []


# -- data ------------------------------------------------------------------------------------


def _sorted(items: list[dict[str, Any]] | None) -> list[str]:
    return sorted(json.dumps(i, sort_keys=True) for i in items or [])


def test_tables_are_the_code_s_tables(deployed: Deployment) -> None:
    dynamodb = deployed.client("dynamodb")
    prefix = deployed.exports()[f"{STAGE}-data-TablePrefix"]
    definitions = table_definitions(prefix)
    assert sorted(dynamodb.list_tables()["TableNames"]) == sorted(
        d["TableName"] for d in definitions
    )
    for definition in definitions:
        table = dynamodb.describe_table(TableName=definition["TableName"])["Table"]
        assert table["KeySchema"] == definition["KeySchema"]
        assert _sorted(table["AttributeDefinitions"]) == _sorted(definition["AttributeDefinitions"])
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        indexes = [
            {k: i[k] for k in ("IndexName", "KeySchema", "Projection")}
            for i in table.get("LocalSecondaryIndexes", [])
        ]
        assert _sorted(indexes) == _sorted(definition.get("LocalSecondaryIndexes"))
        assert table.get("GlobalSecondaryIndexes", []) == []
        assert "GlobalSecondaryIndexes" not in definition


# -- media -----------------------------------------------------------------------------------


def _s3_notification(deployed: Deployment) -> dict[str, Any]:
    """The bucket's NotificationConfiguration, from the template, in the S3 API's shape."""
    media = check.load("media")
    resolver = check.Resolver(
        media,
        {"Stage": STAGE},
        resource=lambda name, attribute: {
            ("MediaQueue", "Arn"): _queue_arn(deployed, f"moosic-{STAGE}-media"),
        }[(name, attribute)],
    )
    config = resolver.value(media["Resources"]["MediaBucket"]["Properties"])[
        "NotificationConfiguration"
    ]
    return {
        "QueueConfigurations": [
            {
                "QueueArn": q["Queue"],
                "Events": [q["Event"]],
                "Filter": {"Key": {"FilterRules": q["Filter"]["S3Key"]["Rules"]}},
            }
            for q in config["QueueConfigurations"]
        ]
    }


def _queue_arn(deployed: Deployment, name: str) -> str:
    sqs = deployed.client("sqs")
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    return str(
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
    )


def test_media_bucket_is_encrypted(deployed: Deployment) -> None:
    bucket = deployed.exports()[f"{STAGE}-media-BucketName"]
    rules = deployed.client("s3").get_bucket_encryption(Bucket=bucket)[
        "ServerSideEncryptionConfiguration"
    ]["Rules"]
    assert [r["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in rules] == ["AES256"]


def test_uploads_under_users_reach_the_media_queue_and_outputs_do_not(
    deployed: Deployment,
) -> None:
    # moto's CloudFormation drops NotificationConfiguration: the template's own configuration
    # is put through the S3 API, then S3 (moto) delivers events to the deployed queue.
    s3, sqs = deployed.client("s3"), deployed.client("sqs")
    exports = deployed.exports()
    bucket = exports[f"{STAGE}-media-BucketName"]
    queue = sqs.get_queue_url(QueueName=f"moosic-{STAGE}-media")["QueueUrl"]
    s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration=_s3_notification(deployed)
    )
    owner, video = "01HZX0OWNER00000000000000", "01HZX0VIDEO00000000000000"
    s3.put_object(Bucket=bucket, Key=f"{video_prefix(owner, video)}master.m3u8", Body=b"#EXTM3U")
    s3.put_object(Bucket=bucket, Key="brand/watermark.png", Body=b"png")
    key = upload_key(owner, video, "video/mp4").key
    s3.put_object(Bucket=bucket, Key=key, Body=b"video", ContentType="video/mp4")
    keys = []
    for message in sqs.receive_message(
        QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0
    ).get("Messages", []):
        body = json.loads(message["Body"])
        # Event keys are URL-encoded (media/aws.py decodes them with unquote_plus too).
        keys += [unquote_plus(r["s3"]["object"]["key"]) for r in body.get("Records", [])]
    assert keys == [key]


def test_media_queue_redrives_to_its_dead_letter_queue(deployed: Deployment) -> None:
    sqs = deployed.client("sqs")
    url = deployed.exports()[f"{STAGE}-media-QueueUrl"]
    name = url.rsplit("/", 1)[-1]
    attributes = sqs.get_queue_attributes(
        QueueUrl=sqs.get_queue_url(QueueName=name)["QueueUrl"], AttributeNames=["All"]
    )["Attributes"]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == _queue_arn(deployed, f"moosic-{STAGE}-media-dlq")
    assert int(redrive["maxReceiveCount"]) == 5
    # media/aws.py long-polls 20 s and hides a message 300 s while it is handled.
    assert attributes["VisibilityTimeout"] == "300"
    assert attributes["ReceiveMessageWaitTimeSeconds"] == "20"
    assert attributes["SqsManagedSseEnabled"] == "true"


def test_mediaconvert_events_go_to_the_media_queue(deployed: Deployment) -> None:
    events = deployed.client("events")
    rule = events.describe_rule(Name=f"moosic-{STAGE}-mediaconvert-jobs")
    pattern = json.loads(rule["EventPattern"])
    assert pattern["source"] == ["aws.mediaconvert"]
    assert set(pattern["detail"]["status"]) == {"COMPLETE", "ERROR"}
    assert pattern["detail"]["queue"] == [deployed.imported(f"{STAGE}-media-MediaConvertQueueArn")]
    targets = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
    assert [t["Arn"] for t in targets] == [_queue_arn(deployed, f"moosic-{STAGE}-media")]


# -- IAM -------------------------------------------------------------------------------------


def _iam_documents(deployed: Deployment, stack: str, role: str) -> list[dict[str, Any]]:
    """The role's inline policies as IAM reports them, and the managed policies it attaches."""
    iam = deployed.client("iam")
    template = check.load(stack)
    props = template["Resources"][role]["Properties"]
    name = check.Resolver(template, {"Stage": STAGE}).value(props["RoleName"])
    documents = [
        _document(iam.get_role_policy(RoleName=name, PolicyName=p)["PolicyDocument"])
        for p in iam.list_role_policies(RoleName=name)["PolicyNames"]
    ]
    assert len(documents) == len(props.get("Policies", []))
    # moto's CloudFormation creates the managed policies but does not attach them
    # (list_attached_role_policies is empty): their ARNs come from the stacks' exports.
    resolver = check.Resolver(template, {"Stage": STAGE}, deployed.exports())
    for arn in props.get("ManagedPolicyArns", []):
        policy = iam.get_policy(PolicyArn=resolver.value(arn))["Policy"]
        version = iam.get_policy_version(
            PolicyArn=policy["Arn"], VersionId=policy["DefaultVersionId"]
        )["PolicyVersion"]
        documents.append(_document(version["Document"]))
    return documents


def _document(document: str | dict[str, Any]) -> dict[str, Any]:
    """A policy document as IAM returns it.

    botocore decodes JSON documents; moto's CloudFormation stores a role's inline policies as
    the Python repr of the template's dict, which reaches the client as a string.
    """
    if isinstance(document, dict):
        return document
    text = unquote(document)
    try:
        decoded: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError:
        decoded = ast.literal_eval(text)
    return decoded


@pytest.mark.parametrize("who", sorted(ROLES))
def test_iam_reports_exactly_the_actions_the_code_calls(deployed: Deployment, who: str) -> None:
    stack, role, expected = ROLES[who]
    granted = check.allowed_actions(_iam_documents(deployed, stack, role))
    assert granted == expected


def test_instance_profiles_carry_their_roles(deployed: Deployment) -> None:
    iam = deployed.client("iam")
    for profile, role in [
        (f"moosic-{STAGE}-gateway", f"moosic-{STAGE}-gateway"),
        (f"moosic-{STAGE}-media-worker", f"moosic-{STAGE}-media-worker"),
    ]:
        roles = iam.get_instance_profile(InstanceProfileName=profile)["InstanceProfile"]["Roles"]
        assert [r["RoleName"] for r in roles] == [role]
    trust = iam.get_role(RoleName=f"moosic-{STAGE}-mediaconvert")["Role"][
        "AssumeRolePolicyDocument"
    ]
    assert [s["Principal"] for s in trust["Statement"]] == [
        {"Service": "mediaconvert.amazonaws.com"}
    ]


# -- compute ---------------------------------------------------------------------------------


def test_alb_forwards_https_to_the_gateway_port_with_readyz_checks(
    deployed: Deployment,
) -> None:
    elb = deployed.client("elbv2")
    exports = deployed.exports()
    balancer = elb.describe_load_balancers(Names=[f"moosic-{STAGE}"])["LoadBalancers"][0]
    assert balancer["Scheme"] == "internet-facing"
    assert {z["SubnetId"] for z in balancer["AvailabilityZones"]} == set(
        exports[f"{STAGE}-network-PublicSubnetIds"].split(",")
    )
    assert balancer["SecurityGroups"] == [exports[f"{STAGE}-network-AlbSecurityGroupId"]]
    group = elb.describe_target_groups(Names=[f"moosic-{STAGE}-gateway"])["TargetGroups"][0]
    assert group["Port"] == int(exports[f"{STAGE}-network-GatewayPort"])
    assert group["Protocol"] == "HTTP"
    assert group["HealthCheckPath"] == "/readyz"
    assert group["Matcher"] == {"HttpCode": "200"}
    listeners = elb.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]
    assert [(x["Port"], x["Protocol"]) for x in listeners] == [(443, "HTTPS")]
    assert [a["TargetGroupArn"] for a in listeners[0]["DefaultActions"]] == [
        group["TargetGroupArn"]
    ]
    attributes = {
        a["Key"]: a["Value"]
        for a in elb.describe_target_group_attributes(TargetGroupArn=group["TargetGroupArn"])[
            "Attributes"
        ]
    }
    assert attributes["stickiness.enabled"] == "false"


def test_groups_run_in_the_private_subnets(deployed: Deployment) -> None:
    autoscaling = deployed.client("autoscaling")
    exports = deployed.exports()
    private = set(exports[f"{STAGE}-network-PrivateSubnetIds"].split(","))
    groups = {
        g["AutoScalingGroupName"]: g
        for g in autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
    }
    gateway, worker = groups[f"moosic-{STAGE}-gateway"], groups[f"moosic-{STAGE}-media-worker"]
    for group in (gateway, worker):
        assert set(group["VPCZoneIdentifier"].split(",")) == private
    assert gateway["TargetGroupARNs"] == [exports[f"{STAGE}-compute-GatewayTargetGroupArn"]]
    assert gateway["HealthCheckType"] == "ELB"
    assert (gateway["MinSize"], gateway["MaxSize"]) == (2, 20)
    assert worker["TargetGroupARNs"] == []
    assert gateway["LaunchTemplate"]["LaunchTemplateName"] == f"moosic-{STAGE}-gateway"
    assert worker["LaunchTemplate"]["LaunchTemplateName"] == f"moosic-{STAGE}-media-worker"


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
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


@pytest.mark.parametrize("kind", ["gateway", "media-worker"])
def test_deployed_user_data_starts_a_node(deployed: Deployment, kind: str, key_file: Path) -> None:
    ec2 = deployed.client("ec2")
    name = f"moosic-{STAGE}-{kind}"
    data = ec2.describe_launch_template_versions(LaunchTemplateName=name)["LaunchTemplateVersions"][
        0
    ]["LaunchTemplateData"]
    assert data["IamInstanceProfile"]["Arn"].endswith(f":instance-profile/{name}")
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    script = base64.b64decode(data["UserData"]).decode()
    environ = {
        k: re.sub(r"\$\(secret [^)]*\)", "s" * 48, v)
        for k, v in check.moosic_settings(script).items()
    }
    environ[PREFIX + "CLOUDFRONT_PRIVATE_KEY_FILE"] = str(key_file)
    settings = load_settings(environ)
    exports = deployed.exports()
    assert settings.media.media_bucket == exports[f"{STAGE}-media-BucketName"]
    assert settings.storage.dynamodb_table_prefix == exports[f"{STAGE}-data-TablePrefix"]
    assert settings.media.media_mediaconvert_role == exports[f"{STAGE}-media-MediaConvertRoleArn"]
    assert settings.media.cloudfront_domain == f"media.{DOMAIN}"
    if kind == "media-worker":
        assert settings.media.media_sqs_url == exports[f"{STAGE}-media-QueueUrl"]
    else:
        assert settings.media.media_sqs_url is None
        assert f"--target-group-arn {exports[f'{STAGE}-compute-GatewayTargetGroupArn']}" in script


def test_upload_function_is_configured_from_the_media_stack(deployed: Deployment) -> None:
    function = deployed.client("lambda").get_function_configuration(
        FunctionName=f"moosic-{STAGE}-upload"
    )
    exports = deployed.exports()
    assert function["Handler"] == "media.aws_lambda.handler"
    assert function["Role"].endswith(f":role/moosic-{STAGE}-upload-lambda")
    config = config_from_env(function["Environment"]["Variables"])
    assert config.bucket == exports[f"{STAGE}-media-BucketName"]
    assert config.queue_url == exports[f"{STAGE}-media-QueueUrl"]
    assert config.mediaconvert_role == exports[f"{STAGE}-media-MediaConvertRoleArn"]


# -- analytics and observability --------------------------------------------------------------


def test_clickstream_stream_and_events_bucket(deployed: Deployment) -> None:
    summary = deployed.client("kinesis").describe_stream_summary(
        StreamName=f"moosic-{STAGE}-clickstream"
    )["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == 2
    bucket = deployed.exports()[f"{STAGE}-analytics-EventsBucketName"]
    deployed.client("s3").head_bucket(Bucket=bucket)


def test_dashboard_and_alarm_topic(deployed: Deployment) -> None:
    body = json.loads(
        deployed.client("cloudwatch").get_dashboard(DashboardName=f"moosic-{STAGE}")[
            "DashboardBody"
        ]
    )
    metrics = [m for w in body["widgets"] for m in w["properties"]["metrics"]]
    assert [
        "Moosic/Gateway",
        "WsConnections",
        "AutoScalingGroupName",
        f"moosic-{STAGE}-gateway",
    ] == metrics[0][:4]
    topics = {
        t["TopicArn"].rsplit(":", 1)[-1] for t in deployed.client("sns").list_topics()["Topics"]
    }
    assert {f"moosic-{STAGE}-alarms", f"moosic-{STAGE}-mail-events"} <= topics
