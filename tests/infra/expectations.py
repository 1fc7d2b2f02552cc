"""What the code expects of the deployment: the AWS calls per kind of process (shared by tests)."""

from __future__ import annotations

from infra import check
from storage.dynamodb.dax import READ_OPERATIONS

STAGE = "t1"


def script(launch_template: str, stage: str = STAGE) -> str:
    """A launch template's user data, rendered with stand-ins for what only AWS knows."""
    resolver = check.resolver_for("compute", stage)
    return check.user_data(resolver.template, launch_template, resolver)


CODE = check.aws_calls()
PROVISIONING = {("storage.dynamodb.schema", "create_tables")}
"""``python -m storage.dynamodb create-tables`` (development); the data stack makes the tables."""


def calls(
    module_prefix: str, functions: set[str] | None = None, exclude: frozenset[str] = frozenset()
) -> list[check.Call]:
    return [
        c
        for c in CODE.calls
        if c.module.startswith(module_prefix)
        and (c.module, c.function) not in PROVISIONING
        and (functions is None or c.function in functions)
        and c.function not in exclude
    ]


STORE = calls("storage.dynamodb")
GATEWAY_MEDIA = calls("media.aws", {"AwsMedia.ensure_watermark", "AwsMedia.upload_form"})
WORKER_MEDIA = [
    c
    for c in calls("media.aws", exclude=frozenset({"AwsMedia.upload_form"}))
    if c.module == "media.aws"
]
GATEWAY_NOTIFY = calls("gateway.mail.ses") + calls("gateway.push.sns")
"""The notification sinks' SES and SNS calls (the gateway's role)."""
LAMBDA_MEDIA = calls("media.aws_lambda") + [
    c for c in calls("media.aws") if c.module == "media.aws" and c.function.startswith("AwsJobs.")
]


def actions(found: list[check.Call]) -> set[str]:
    return {a for c in found for a in check.iam_action(c, CODE.transact_keys)}


def cli(launch_template: str) -> set[str]:
    return check.cli_actions(script(launch_template))


ROLES: dict[str, tuple[str, str, set[str]]] = {
    "gateway nodes": (
        "compute",
        "GatewayRole",
        actions(STORE + GATEWAY_MEDIA + GATEWAY_NOTIFY) | cli("GatewayLaunchTemplate"),
    ),
    "media workers": (
        "compute",
        "WorkerRole",
        actions(STORE + WORKER_MEDIA) | cli("WorkerLaunchTemplate"),
    ),
    "upload Lambda": (
        "compute",
        "UploadFunctionRole",
        # The Lambda runtime writes the function's logs with its role.
        actions(LAMBDA_MEDIA) | {"logs:CreateLogStream", "logs:PutLogEvents"},
    ),
    "DAX": (
        "data",
        "DaxRole",
        # DAX reads the tables for the reads the store sends it, and describes them.
        {
            f"dynamodb:{check.camel(c.method)}"
            for c in STORE
            if c.service == "dax" and c.method in READ_OPERATIONS
        }
        | {"dynamodb:DescribeTable"},
    ),
}
