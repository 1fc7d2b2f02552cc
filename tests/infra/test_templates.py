"""What the templates promise where moto cannot look: Redis, DAX, CloudFront, bucket settings.

Each assertion reads the evaluated template (defaults, stage ``t1``); moto skips these types or
drops these properties (infra/README.md, "What moto cannot check").
"""

from __future__ import annotations

import re
from typing import Any

from gateway.settings import Settings
from infra import check
from tests.infra.expectations import STAGE


def _props(stack: str, resource: str) -> dict[str, Any]:
    resolver = check.resolver_for(stack, STAGE)
    props: dict[str, Any] = resolver.value(resolver.template["Resources"][resource]["Properties"])
    return props


def test_redis_is_a_tls_cluster_with_auth_and_a_replica_per_shard() -> None:
    redis = _props("data", "Redis")
    assert redis["ClusterMode"] == "enabled"
    assert redis["CacheParameterGroupName"].endswith(".cluster.on")
    assert redis["NumNodeGroups"] == check.load("data")["Parameters"]["RedisShards"]["Default"]
    assert redis["ReplicasPerNodeGroup"] == 1
    assert redis["MultiAZEnabled"] is True
    assert redis["AutomaticFailoverEnabled"] is True
    assert redis["TransitEncryptionEnabled"] is True
    assert redis["AtRestEncryptionEnabled"] is True
    assert redis["AuthToken"] == "{{resolve:secretsmanager:RedisAuthToken-id}}"
    secret = _props("data", "RedisAuthToken")
    assert secret["Name"] == f"moosic/{STAGE}/redis-auth"
    # AUTH tokens may not hold / " @: the token goes into MOOSIC_REDIS_URL unescaped.
    assert secret["GenerateSecretString"]["ExcludePunctuation"] is True


def test_redis_and_dax_live_in_the_private_subnets() -> None:
    private = check.stack_exports("data", STAGE)[f"{STAGE}-network-PrivateSubnetIds"].split(",")
    assert _props("data", "RedisSubnetGroup")["SubnetIds"] == private
    assert _props("data", "DaxSubnetGroup")["SubnetIds"] == private
    dax = _props("data", "DaxCluster")
    assert dax["ClusterEndpointEncryptionType"] == "TLS"
    assert dax["SSESpecification"] == {"SSEEnabled": True}
    assert dax["ClusterName"] == f"moosic-{STAGE}"  # the ARN the store policy names


def test_media_bucket_is_private_encrypted_and_tiered() -> None:
    bucket = _props("media", "MediaBucket")
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    rules = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert [r["ServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in rules] == ["AES256"]
    lifecycle = {r["Prefix"]: r for r in bucket["LifecycleConfiguration"]["Rules"]}
    assert set(lifecycle) == {"users/", "videos/"}
    assert all(r["Status"] == "Enabled" for r in lifecycle.values())
    queues = bucket["NotificationConfiguration"]["QueueConfigurations"]
    assert [(q["Event"], q["Filter"]["S3Key"]["Rules"]) for q in queues] == [
        ("s3:ObjectCreated:*", [{"Name": "prefix", "Value": "users/"}])
    ]


def test_playback_is_signed_and_geo_restricted_like_the_gateway() -> None:
    config = _props("edge", "Distribution")["DistributionConfig"]
    geo = config["Restrictions"]["GeoRestriction"]
    assert geo["RestrictionType"] == "whitelist"
    assert set(geo["Locations"]) == Settings().guard.allowed_countries == {"KH"}
    behaviours = {b["PathPattern"]: b for b in config["CacheBehaviors"]}
    playback = behaviours["videos/*"]
    assert playback["TargetOriginId"] == "media"
    assert playback["TrustedKeyGroups"] == ["PlaybackKeyGroup-id"]
    assert playback["AllowedMethods"] == ["GET", "HEAD", "OPTIONS"]
    origins = {o["Id"]: o for o in config["Origins"]}
    assert origins["media"]["OriginAccessControlId"] == "MediaOriginAccess.Id"
    oac = _props("edge", "MediaOriginAccess")["OriginAccessControlConfig"]
    assert (oac["OriginAccessControlOriginType"], oac["SigningBehavior"]) == ("s3", "always")


def test_cacheable_reads_go_to_the_alb_keyed_by_authorization() -> None:
    config = _props("edge", "Distribution")["DistributionConfig"]
    reads = {b["PathPattern"]: b for b in config["CacheBehaviors"]}["/v1/videos/*"]
    assert reads["TargetOriginId"] == "gateway"
    assert reads["CachedMethods"] == ["GET", "HEAD"]
    policy = _props("edge", "ApiReadCachePolicy")["CachePolicyConfig"]
    headers = policy["ParametersInCacheKeyAndForwardedToOrigin"]["HeadersConfig"]
    assert headers == {"HeaderBehavior": "whitelist", "Headers": ["Authorization"]}
    assert policy["MinTTL"] == 0
    request = _props("edge", "ApiReadOriginRequestPolicy")["OriginRequestPolicyConfig"]
    assert "CloudFront-Viewer-Country" in request["HeadersConfig"]["Headers"]
    gateway = {o["Id"]: o for o in config["Origins"]}["gateway"]
    assert (
        gateway["DomainName"] == check.stack_exports("compute", STAGE)[f"{STAGE}-edge-OriginHost"]
    )
    assert gateway["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    default = config["DefaultCacheBehavior"]
    # Managed CachingDisabled + AllViewerAndCloudFrontHeaders-2022-06 (WebSocket handshakes).
    assert default["CachePolicyId"] == "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
    assert default["OriginRequestPolicyId"] == "33f36d7e-f396-46d9-90e0-52428a34d9dc"


def test_only_cloudfront_reaches_the_alb() -> None:
    group = _props("network", "AlbSecurityGroup")
    assert [
        (r["FromPort"], r.get("SourcePrefixListId"), r.get("CidrIp"))
        for r in group["SecurityGroupIngress"]
    ] == [(443, "pl-31a34658", None)]


def test_scaling_tracks_cpu_and_connections_per_node() -> None:
    cpu = _props("compute", "GatewayCpuScaling")["TargetTrackingConfiguration"]
    assert (
        cpu["PredefinedMetricSpecification"]["PredefinedMetricType"] == "ASGAverageCPUUtilization"
    )
    connections = _props("compute", "GatewayConnectionsScaling")["TargetTrackingConfiguration"]
    metric = connections["CustomizedMetricSpecification"]
    assert (metric["Namespace"], metric["MetricName"]) == ("Moosic/Gateway", "WsConnections")
    assert metric["Dimensions"] == [
        {"Name": "AutoScalingGroupName", "Value": f"moosic-{STAGE}-gateway"}
    ]
    script = check.user_data(
        check.load("compute"), "GatewayLaunchTemplate", check.resolver_for("compute", STAGE)
    )
    # What the node publishes is what the policy tracks, read from the gateway's own gauge.
    assert "MetricName=WsConnections" in script
    assert "--namespace Moosic/Gateway" in script
    assert "value moosic_ws_connections" in script
    assert f"Name=AutoScalingGroupName,Value=moosic-{STAGE}-gateway" in script


def test_the_metrics_script_reads_gauges_the_gateway_registers() -> None:
    registered = {
        f"moosic_{name}"
        for path in (check.ROOT / "gateway").rglob("*.py")
        for name in re.findall(r'gauges\["([a-z_]+)"\]', path.read_text())
    }
    script = check.user_data(
        check.load("compute"), "GatewayLaunchTemplate", check.resolver_for("compute", STAGE)
    )
    read = set(re.findall(r"value (moosic_[a-z_]+)", script))
    assert read == {"moosic_ws_connections", "moosic_redis_circuit_state", "moosic_store_healthy"}
    assert read <= registered, sorted(read - registered)
