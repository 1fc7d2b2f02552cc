"""The seven stacks deployed once to a moto server's CloudFormation, over HTTP."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from infra import check
from tests.infra.expectations import STAGE
from tests.support.moto_server import ACCESS_KEY, SECRET_KEY, MotoServer

REGION = check.PSEUDO["AWS::Region"]
DOMAIN = check.REQUIRED_PARAMETERS["edge"]["DomainName"]


@dataclass
class Deployment:
    server: MotoServer
    stage: str
    subsets: dict[str, check.Subset] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)
    stand_ins: dict[str, Any] = field(default_factory=dict)
    """Values imported in place of exports moto could not create (by export name)."""
    hosted_zone: str = ""

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.server.url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def exports(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for page in self.client("cloudformation").get_paginator("list_exports").paginate():
            found |= {e["Name"]: e["Value"] for e in page["Exports"]}
        return found

    def imported(self, name: str) -> Any:
        """What a later stack imports under ``name``: the export, or its stand-in."""
        return self.exports().get(name, self.stand_ins.get(name))


def _public_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def deploy(
    server: MotoServer, stage: str, extra: dict[str, dict[str, Any]] | None = None
) -> Deployment:
    """Every stack, in order; ``extra``: more parameters by stack (the defaults otherwise)."""
    deployment = Deployment(server, stage)
    zone = deployment.client("route53").create_hosted_zone(Name=DOMAIN, CallerReference=stage)
    deployment.hosted_zone = zone["HostedZone"]["Id"].split("/")[-1]
    s3 = deployment.client("s3")
    releases = check.REQUIRED_PARAMETERS["compute"]
    s3.create_bucket(
        Bucket=releases["ArtifactBucket"],
        CreateBucketConfiguration={"LocationConstraint": REGION},
    )
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as archive:
        archive.write(check.ROOT / "media" / "aws_lambda.py", "media/aws_lambda.py")
    s3.put_object(
        Bucket=releases["ArtifactBucket"],
        Key=releases["LambdaArtifactKey"],
        Body=package.getvalue(),
    )
    certificate = deployment.client("acm").request_certificate(DomainName=f"origin.{DOMAIN}")
    overrides: dict[str, dict[str, Any]] = {
        "edge": {"HostedZoneId": deployment.hosted_zone, "PlaybackPublicKey": _public_key()},
        "compute": {"OriginCertificateArn": certificate["CertificateArn"]},
    }
    stand_ins = check.stack_exports(check.STACKS[-1], stage)
    modelled = check.moto_modelled_types()
    cloudformation = deployment.client("cloudformation")
    for name in check.STACKS:
        template = check.load(name)
        subset = check.moto_subset(template, modelled, deployment.stand_ins, stage)
        deployment.subsets[name] = subset
        params = {
            "Stage": stage,
            **check.REQUIRED_PARAMETERS.get(name, {}),
            **overrides.get(name, {}),
            **(extra or {}).get(name, {}),
        }
        stack = f"moosic-{stage}-{name}"
        cloudformation.create_stack(
            StackName=stack,
            TemplateBody=json.dumps(subset.template),
            Parameters=[{"ParameterKey": k, "ParameterValue": str(v)} for k, v in params.items()],
            Capabilities=["CAPABILITY_NAMED_IAM"],
        )
        described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
        deployment.statuses[name] = described["StackStatus"]
        resolver = check.Resolver(template, {"Stage": stage})
        for output in subset.outputs:
            export = template["Outputs"][output].get("Export")
            if export is not None:
                export_name = resolver.value(export["Name"])
                deployment.stand_ins[export_name] = stand_ins.get(export_name, export_name)
    return deployment


@pytest.fixture(scope="module")
def deployed() -> Iterator[Deployment]:
    server = MotoServer.start()
    try:
        yield deploy(server, STAGE)
    finally:
        server.stop()
