"""The stacks deployed to moto with the region parameters (docs/deploy.md, "Two or more
regions"), checked through the services' APIs: what moto models of the region resources (the
internal ALB, its listener and rule, security groups, the Auto Scaling group's target groups,
the launch template, the regional tables). moto does not model ``AWS::IAM::RolePolicy``
(``GatewayRegionLinkPolicy``), the JWT secret, nor ingress from a prefix list (all checked
in test_regions.py), nor the global tables (a separate
template, test_global_tables.py), and cannot create the latency ``OriginRecord`` (the ALB's
``CanonicalHostedZoneID``, test_regions.py).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from gateway.settings import PREFIX
from infra import check
from tests.infra.conftest import Deployment, deploy
from tests.support.moto_server import MotoServer

STAGE = "r2"
MAP = "kh=http://internal-a.ap-southeast-1.elb.amazonaws.com,au=http://internal-b.ap-southeast-2.elb.amazonaws.com"
PEERS = "pl-0123456789abcdef0"


@pytest.fixture(scope="module")
def regional() -> Iterator[Deployment]:
    server = MotoServer.start()
    try:
        yield deploy(
            server,
            STAGE,
            {
                "data": {"SharedTables": "global"},
                "compute": {
                    "RegionName": "kh",
                    "RegionMap": MAP,
                    "PeerRegionsPrefixList": PEERS,
                    "JwtSecretSource": "replica",
                },
            },
        )
    finally:
        server.stop()


def test_every_stack_is_created(regional: Deployment) -> None:
    assert regional.statuses == dict.fromkeys(check.STACKS, "CREATE_COMPLETE")


def test_only_the_regional_tables_are_made_here(regional: Deployment) -> None:
    names = set(regional.client("dynamodb").list_tables()["TableNames"])
    assert names == {f"moosic-{STAGE}-{t}" for t in ("messages", "channels", "videos")}


def test_the_server_api_load_balancer_is_internal_and_forwards_server_paths(
    regional: Deployment,
) -> None:
    elb = regional.client("elbv2")
    (alb,) = elb.describe_load_balancers(Names=[f"moosic-{STAGE}-server-api"])["LoadBalancers"]
    assert alb["Scheme"] == "internal"
    private = set(regional.exports()[f"{STAGE}-network-PrivateSubnetIds"].split(","))
    assert {z["SubnetId"] for z in alb["AvailabilityZones"]} == private
    (listener,) = elb.describe_listeners(LoadBalancerArn=alb["LoadBalancerArn"])["Listeners"]
    assert (listener["Port"], listener["Protocol"]) == (80, "HTTP")
    assert [a["Type"] for a in listener["DefaultActions"]] == ["fixed-response"]
    rules = [
        r
        for r in elb.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]
        if not r["IsDefault"]
    ]
    (targets,) = elb.describe_target_groups(Names=[f"moosic-{STAGE}-server-api"])["TargetGroups"]
    assert [
        (c["Field"], c.get("PathPatternConfig", {}).get("Values") or c.get("Values"))
        for r in rules
        for c in r["Conditions"]
    ] == [("path-pattern", ["/server/*"])]
    assert [a["TargetGroupArn"] for r in rules for a in r["Actions"]] == [targets["TargetGroupArn"]]
    assert targets["HealthCheckPath"] == "/readyz"
    groups = regional.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[f"moosic-{STAGE}-gateway"]
    )["AutoScalingGroups"]
    assert targets["TargetGroupArn"] in groups[0]["TargetGroupARNs"]
    assert len(groups[0]["TargetGroupARNs"]) == 2


def test_the_gateway_port_admits_the_server_api_load_balancer(regional: Deployment) -> None:
    ec2 = regional.client("ec2")
    groups = {g["GroupName"]: g for g in ec2.describe_security_groups()["SecurityGroups"]}
    server_api = groups[f"moosic-{STAGE}-server-api"]
    port = int(regional.exports()[f"{STAGE}-network-GatewayPort"])
    sources = {
        (p["FromPort"], pair["GroupId"])
        for p in groups[f"moosic-{STAGE}-gateway"]["IpPermissions"]
        for pair in p.get("UserIdGroupPairs", [])
    }
    assert (port, server_api["GroupId"]) in sources
    # moto drops an ingress rule whose source is a prefix list (the group has none here): the
    # rule (port 80 from PeerRegionsPrefixList only) is checked in test_regions.py.


def test_the_deployed_user_data_passes_the_region_settings(regional: Deployment) -> None:
    ec2 = regional.client("ec2")
    (version,) = ec2.describe_launch_template_versions(
        LaunchTemplateName=f"moosic-{STAGE}-gateway"
    )["LaunchTemplateVersions"]
    script = base64.b64decode(version["LaunchTemplateData"]["UserData"]).decode()
    settings = check.moosic_settings(script)
    assert settings[PREFIX + "REGION"] == "kh"
    assert settings[PREFIX + "REGIONS"] == MAP
    assert settings[PREFIX + "REGION_LINK_KEY"] == "$(secret moosic/region-link)"
    assert settings[PREFIX + "SERVER_API_KEYS"] == "$(secret moosic/region-link)"
    # A replica region reads the replicated JWT secret (moto does not model the secret
    # resource at all: that it is not made here is checked in test_regions.py).
    assert settings[PREFIX + "JWT_SECRET"] == f"$(secret moosic/{STAGE}/jwt)"
