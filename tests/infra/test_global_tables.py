"""The shared tables of two or more regions (infra/regions/global-tables.yaml) and the data
stack's SharedTables=global.

moto's CloudFormation does not model ``AWS::DynamoDB::GlobalTable`` (and the stack is deployed
only with regions), so this checks the evaluated templates against the code's table
definitions, as test_code_agreement.py does for the data stack; cfn-lint runs on the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra import check
from storage.dynamodb import keys, table_definitions
from tests.infra.expectations import STAGE

TEMPLATE = check.ROOT / "infra" / "regions" / "global-tables.yaml"
PREFIX = f"moosic-{STAGE}-"
SHARED = {keys.ACCOUNTS, keys.REFRESH_TOKENS, keys.GROUPS, keys.FOLLOWS}
"""Records every region reads (docs/regions.md): last writer wins is acceptable for them."""
REGIONAL = {keys.MESSAGES, keys.CHANNELS, keys.VIDEOS}
"""Ordered at home (messages, the channel's offset counter) or regional in this milestone."""


def _template() -> dict[str, Any]:
    from cfnlint.decode import decode  # type: ignore[import-untyped]

    template, matches = decode(str(TEMPLATE))
    assert not matches, matches
    loaded: dict[str, Any] = check._plain(template)
    return loaded


def _global_tables(**parameters: str) -> dict[str, dict[str, Any]]:
    template = _template()
    params = {"Stage": STAGE, "ReplicaRegion1": "ap-southeast-2", **parameters}
    resolver = check.Resolver(template, params)
    found = {}
    for body in template["Resources"].values():
        assert body["Type"] == "AWS::DynamoDB::GlobalTable"
        props = resolver.value(body["Properties"])
        # CloudFormation drops AWS::NoValue from a list: the resolver leaves None there.
        props["Replicas"] = [r for r in props["Replicas"] if r is not None]
        found[props["TableName"]] = props
    return found


def _data_tables(shared: str) -> set[str]:
    template = check.load("data")
    resolver = check.Resolver(template, {"Stage": STAGE, "SharedTables": shared})
    return {
        resolver.value(body["Properties"]["TableName"])
        for body in template["Resources"].values()
        if body["Type"] == "AWS::DynamoDB::Table"
        and ("Condition" not in body or resolver.condition(body["Condition"]))
    }


def test_cfn_lint_is_clean() -> None:
    from cfnlint.api import ManualArgs, lint_file  # type: ignore[import-untyped]

    findings = lint_file(Path(TEMPLATE), ManualArgs(regions=list(check.LINT_REGIONS)))
    assert [str(m) for m in findings] == []


def test_the_shared_tables_are_global_and_the_ordered_ones_regional() -> None:
    assert set(keys.TABLES) == SHARED | REGIONAL
    assert set(_global_tables()) == {PREFIX + t for t in SHARED}
    assert _data_tables("global") == {PREFIX + t for t in REGIONAL}
    assert _data_tables("here") == {PREFIX + t for t in keys.TABLES}


@pytest.mark.parametrize("table", sorted(SHARED))
def test_global_table_matches_its_definition(table: str) -> None:
    definition = {d["TableName"]: d for d in table_definitions(PREFIX)}[PREFIX + table]
    props = _global_tables()[PREFIX + table]
    assert props["KeySchema"] == definition["KeySchema"]
    normal = sorted(map(check.json_text, props["AttributeDefinitions"]))
    assert normal == sorted(map(check.json_text, definition["AttributeDefinitions"]))
    assert props["BillingMode"] == definition["BillingMode"] == "PAY_PER_REQUEST"
    assert sorted(map(check.json_text, props.get("LocalSecondaryIndexes", []))) == sorted(
        map(check.json_text, definition.get("LocalSecondaryIndexes", []))
    )
    # The same TTL as the data stack's table of the same name (the code's create_tables).
    data = check.resolver_for("data", STAGE)
    regional = {
        data.value(b["Properties"]["TableName"]): data.value(b["Properties"])
        for b in data.template["Resources"].values()
        if b["Type"] == "AWS::DynamoDB::Table"
    }[PREFIX + table]
    assert props.get("TimeToLiveSpecification") == regional.get("TimeToLiveSpecification")
    # More than one replica needs a stream (how global tables replicate).
    assert props["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert props["SSESpecification"] == {"SSEEnabled": True}


@pytest.mark.parametrize(
    ("extra", "regions"),
    [
        ({}, ["ap-southeast-1", "ap-southeast-2"]),
        ({"ReplicaRegion2": "us-east-1"}, ["ap-southeast-1", "ap-southeast-2", "us-east-1"]),
        (
            {"ReplicaRegion2": "us-east-1", "ReplicaRegion3": "ap-south-1"},
            ["ap-southeast-1", "ap-southeast-2", "us-east-1", "ap-south-1"],
        ),
    ],
)
def test_a_replica_in_this_region_and_each_named_one(
    extra: dict[str, str], regions: list[str]
) -> None:
    for name, props in _global_tables(**extra).items():
        assert [r["Region"] for r in props["Replicas"]] == regions, name
        for replica in props["Replicas"]:
            assert replica["PointInTimeRecoverySpecification"] == {
                "PointInTimeRecoveryEnabled": True
            }


@pytest.mark.parametrize("region", ["ap-southeast-1", "ap-southeast-2"])
def test_each_regions_store_policy_names_its_local_replicas(
    region: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(check.PSEUDO, "AWS::Region", region)
    template = check.load("data")
    params = {"Stage": STAGE, "SharedTables": "global"}
    resolver = check.Resolver(
        template, params, check.stack_exports("data", STAGE), check.stand_in(template, params)
    )
    policy = resolver.value(template["Resources"]["StorePolicy"]["Properties"])
    (tables,) = [s for s in policy["PolicyDocument"]["Statement"] if s["Sid"] == "Tables"]
    account = check.PSEUDO["AWS::AccountId"]
    for table in SHARED:
        assert f"arn:aws:dynamodb:{region}:{account}:table/{PREFIX}{table}" in tables["Resource"]
    assert (
        f"arn:aws:dynamodb:{region}:{account}:table/{PREFIX}groups/index/by_joined"
        in tables["Resource"]
    )
