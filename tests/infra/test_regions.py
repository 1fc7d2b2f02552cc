"""The compute stack for two or more regions (docs/deploy.md, "Two or more regions").

moto deploys the stacks with their defaults (one region, test_moto_deploy.py); the region
resources exist only when ``RegionMap`` is given, so they are checked here on the evaluated
template, like test_templates.py does for what moto cannot look at. moto's CloudFormation
also cannot resolve the ALB's ``CanonicalHostedZoneID``, so the latency record is left out
of the moto deployment (``OriginRecord``, infra/README.md) and checked here too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from gateway.settings import FIELDS, PREFIX, SettingsError, load_settings
from infra import check
from tests.infra.expectations import STAGE

MAP = "kh=http://internal-moosic-t1-server-api-1.ap-southeast-1.elb.amazonaws.com,au=http://internal-moosic-t1-server-api-2.ap-southeast-2.elb.amazonaws.com"
REGIONS = {
    "RegionName": "kh",
    "RegionMap": MAP,
    "PeerRegionsPrefixList": "pl-0123456789abcdef0",
}
LINK_SECRET = "moosic/region-link"


def _resolver(**parameters: Any) -> check.Resolver:
    template = check.load("compute")
    params = {"Stage": STAGE, **check.REQUIRED_PARAMETERS["compute"], **parameters}
    return check.Resolver(
        template, params, check.stack_exports("compute", STAGE), check.stand_in(template, params)
    )


def _props(resolver: check.Resolver, resource: str) -> dict[str, Any]:
    props: dict[str, Any] = resolver.value(resolver.template["Resources"][resource]["Properties"])
    return props


def _created(resolver: check.Resolver) -> set[str]:
    return {
        name
        for name, body in resolver.template["Resources"].items()
        if "Condition" not in body or resolver.condition(body["Condition"])
    }


def _gateway_script(resolver: check.Resolver) -> str:
    return check.user_data(resolver.template, "GatewayLaunchTemplate", resolver)


REGION_RESOURCES = {
    "ServerApiSecurityGroup",
    "GatewayIngressFromServerApi",
    "ServerApiAlb",
    "ServerApiTargets",
    "ServerApiListener",
    "ServerApiRule",
    "GatewayRegionLinkPolicy",
}


# -- Route 53: one latency record per region -------------------------------------------------


@pytest.mark.parametrize("region", ["ap-southeast-1", "ap-southeast-2", "us-east-1"])
def test_origin_record_is_this_regions_latency_record(
    region: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(check.PSEUDO, "AWS::Region", region)
    resolver = _resolver(**REGIONS)
    record = _props(resolver, "OriginRecord")
    exports = check.stack_exports("compute", STAGE)
    assert record["Name"] == exports[f"{STAGE}-edge-OriginHost"]
    assert record["HostedZoneId"] == exports[f"{STAGE}-edge-HostedZoneId"]
    assert record["Type"] == "A"
    # One record set per region under the same name: the region is both the set identifier
    # and the latency region, so two regions' stacks never write the same record set.
    assert record["SetIdentifier"] == region
    assert record["Region"] == region
    assert record["AliasTarget"] == {
        "DNSName": "Alb.DNSName",
        "HostedZoneId": "Alb.CanonicalHostedZoneID",
        "EvaluateTargetHealth": True,
    }


def test_origin_record_is_a_latency_record_with_one_region_too() -> None:
    record = _props(_resolver(), "OriginRecord")
    assert record["SetIdentifier"] == record["Region"] == check.PSEUDO["AWS::Region"]
    assert record["AliasTarget"]["EvaluateTargetHealth"] is True


def test_what_cloudfront_connects_to_is_the_latency_name() -> None:
    edge = check.resolver_for("edge", STAGE)
    origins = _props(edge, "Distribution")["DistributionConfig"]["Origins"]
    alb_origins = [o for o in origins if "CustomOriginConfig" in o]
    exports = check.stack_exports("compute", STAGE)
    assert [o["DomainName"] for o in alb_origins] == [exports[f"{STAGE}-edge-OriginHost"]]


# -- one region: nothing of the regions is made or set ---------------------------------------


def test_without_a_region_map_no_region_resource_or_setting() -> None:
    resolver = _resolver()
    assert not resolver.condition("HasRegions")
    assert not _created(resolver) & REGION_RESOURCES
    script = _gateway_script(resolver)
    assert not {n for n in check.all_moosic_names(script) if "REGION" in n} - {
        PREFIX + "DYNAMODB_REGION",
        PREFIX + "MEDIA_REGION",
    }
    assert PREFIX + "SERVER_API_KEYS" not in check.all_moosic_names(script)
    assert _props(resolver, "GatewayGroup")["TargetGroupARNs"] == [_ref(resolver, "GatewayTargets")]


def _ref(resolver: check.Resolver, resource: str) -> Any:
    return resolver.value({"Ref": resource})


# -- with a region map: the settings the user data passes ------------------------------------


def _environment(script: str, key_file: Path) -> dict[str, str]:
    written = check.moosic_settings(script)
    environ = {k: re.sub(r"\$\(secret [^)]*\)", "s" * 48, v) for k, v in written.items()}
    environ[PREFIX + "CLOUDFRONT_PRIVATE_KEY_FILE"] = str(key_file)
    return environ


def test_region_settings_the_user_data_passes_are_settings() -> None:
    script = _gateway_script(_resolver(**REGIONS))
    settings = check.moosic_settings(script)
    region_names = {"REGION", "REGIONS", "REGION_LINK_KEY", "SERVER_API_KEYS"}
    assert {PREFIX + n for n in region_names} <= set(settings)
    assert all(n.removeprefix(PREFIX) in FIELDS for n in check.all_moosic_names(script))
    assert set(settings) == check.all_moosic_names(script), "every setting is one line"
    assert settings[PREFIX + "REGION"] == "kh"
    assert settings[PREFIX + "REGIONS"] == MAP
    # The link key comes from the operator's secret at boot, never from the template, and the
    # same key opens this region's server API to the others.
    assert settings[PREFIX + "REGION_LINK_KEY"] == f"$(secret {LINK_SECRET})"
    assert settings[PREFIX + "SERVER_API_KEYS"] == f"$(secret {LINK_SECRET})"
    assert f"MOOSIC_REGIONS={MAP}" not in script.split("cat > /etc/moosic/gateway.env")[0]


def test_region_settings_are_refused_with_the_dynamodb_store_today(tmp_path: Path) -> None:
    """The honest state: the code refuses MOOSIC_REGIONS with MOOSIC_STORE=dynamodb."""
    key = tmp_path / "key.pem"
    key.write_text("unused")
    environ = _environment(_gateway_script(_resolver(**REGIONS)), key)
    assert environ[PREFIX + "STORE"] == "dynamodb"
    with pytest.raises(SettingsError, match=r"MOOSIC_REGIONS: needs MOOSIC_STORE=sqlite"):
        load_settings(environ)


def test_region_settings_parse_as_the_gateway_reads_them() -> None:
    script = _gateway_script(_resolver(**REGIONS))
    written = check.moosic_settings(script)
    environ = {
        k: re.sub(r"\$\(secret [^)]*\)", "k" * 48, written[k])
        for k in (PREFIX + n for n in ("REGION", "REGIONS", "REGION_LINK_KEY", "SERVER_API_KEYS"))
    }
    environ[PREFIX + "JWT_SECRET"] = "j" * 48
    settings = load_settings({**environ, PREFIX + "STORE": "sqlite"})
    assert [name for name, _url in settings.regions.regions] == ["kh", "au"]
    assert settings.regions.region_link_key in settings.http.server_api_keys


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        (MAP, True),
        ("", True),
        ("kh=http://10.0.0.1:8080,au=https://server.au.internal", True),
        ('kh=http://a",au=http://b', False),
        ("kh=http://$(reboot),au=http://b", False),
        ("kh=http://a au=http://b", False),
        ("KH=http://a,au=http://b", False),
    ],
)
def test_region_map_pattern_lets_nothing_into_the_script_but_a_map(
    value: str, allowed: bool
) -> None:
    pattern = check.load("compute")["Parameters"]["RegionMap"]["AllowedPattern"]
    assert (re.fullmatch(pattern, value) is not None) is allowed


def test_region_link_key_is_readable_by_the_gateway_role_only_with_regions() -> None:
    resolver = _resolver(**REGIONS)
    policy = _props(resolver, "GatewayRegionLinkPolicy")
    assert policy["RoleName"] == _ref(resolver, "GatewayRole")
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == "secretsmanager:GetSecretValue"
    region, account = check.PSEUDO["AWS::Region"], check.PSEUDO["AWS::AccountId"]
    assert (
        statement["Resource"] == f"arn:aws:secretsmanager:{region}:{account}:secret:{LINK_SECRET}-*"
    )
    assert "GatewayRegionLinkPolicy" not in _created(_resolver())


# -- the private server API between regions --------------------------------------------------


def test_server_api_is_internal_and_reachable_from_the_peer_regions_only() -> None:
    resolver = _resolver(**REGIONS)
    assert _created(resolver) >= REGION_RESOURCES
    exports = check.stack_exports("compute", STAGE)
    alb = _props(resolver, "ServerApiAlb")
    assert alb["Scheme"] == "internal"
    assert alb["Subnets"] == exports[f"{STAGE}-network-PrivateSubnetIds"].split(",")
    group = _props(resolver, "ServerApiSecurityGroup")
    assert alb["SecurityGroups"] == ["sg-serverapisecuritygroup"]
    assert group["SecurityGroupIngress"] == [
        {
            "IpProtocol": "tcp",
            "FromPort": 80,
            "ToPort": 80,
            "SourcePrefixListId": REGIONS["PeerRegionsPrefixList"],
            "Description": group["SecurityGroupIngress"][0]["Description"],
        }
    ]
    ingress = _props(resolver, "GatewayIngressFromServerApi")
    port = exports[f"{STAGE}-network-GatewayPort"]
    assert ingress["GroupId"] == exports[f"{STAGE}-network-GatewaySecurityGroupId"]
    assert (ingress["FromPort"], ingress["ToPort"]) == (port, port)
    assert ingress["SourceSecurityGroupId"] == "sg-serverapisecuritygroup"


def test_server_api_forwards_only_the_server_paths() -> None:
    resolver = _resolver(**REGIONS)
    listener = _props(resolver, "ServerApiListener")
    assert [a["Type"] for a in listener["DefaultActions"]] == ["fixed-response"]
    assert listener["DefaultActions"][0]["FixedResponseConfig"]["StatusCode"] == "404"
    rule = _props(resolver, "ServerApiRule")
    assert rule["Conditions"] == [
        {"Field": "path-pattern", "PathPatternConfig": {"Values": ["/server/*"]}}
    ]
    assert rule["Actions"] == [
        {"Type": "forward", "TargetGroupArn": _ref(resolver, "ServerApiTargets")}
    ]
    targets = _props(resolver, "ServerApiTargets")
    exports = check.stack_exports("compute", STAGE)
    assert targets["Port"] == exports[f"{STAGE}-network-GatewayPort"]
    assert targets["HealthCheckPath"] == "/readyz"
    # The gateway nodes are the targets of both load balancers.
    assert _props(resolver, "GatewayGroup")["TargetGroupARNs"] == [
        _ref(resolver, "GatewayTargets"),
        _ref(resolver, "ServerApiTargets"),
    ]
    # The relay's link is a WebSocket: the idle timeout stays above the heartbeat.
    idle = {
        a["Key"]: a["Value"] for a in _props(resolver, "ServerApiAlb")["LoadBalancerAttributes"]
    }
    assert int(idle["idle_timeout.timeout_seconds"]) > int(resolver.parameter("HeartbeatSeconds"))


def test_server_api_url_output_is_a_region_map_entry() -> None:
    resolver = _resolver(**REGIONS)
    output = resolver.template["Outputs"]["ServerApiUrl"]
    assert output["Condition"] == "HasRegions"
    url = resolver.value(output["Value"])
    pattern = resolver.template["Parameters"]["RegionMap"]["AllowedPattern"]
    assert re.fullmatch(pattern, f"kh={url},au={url}")


# -- tokens valid in every region: one JWT secret, replicated --------------------------------


def test_a_replica_region_reads_the_original_regions_jwt_secret() -> None:
    made = _resolver(**REGIONS)
    replica = _resolver(**REGIONS, JwtSecretSource="replica")
    assert "JwtSecret" in _created(made)
    assert "JwtSecret" not in _created(replica)
    for resolver in (made, replica):
        settings = check.moosic_settings(_gateway_script(resolver))
        assert settings[PREFIX + "JWT_SECRET"] == f"$(secret moosic/{STAGE}/jwt)"
    secrets = next(
        s
        for p in _props(replica, "GatewayRole")["Policies"]
        for s in p["PolicyDocument"]["Statement"]
        if s.get("Sid") == "Secrets"
    )
    assert any(r.endswith(f":secret:moosic/{STAGE}/jwt-*") for r in secrets["Resource"])
