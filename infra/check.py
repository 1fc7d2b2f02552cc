"""Offline checks of the CloudFormation stacks against the code (tests/infra runs them).

- :func:`lint`: cfn-lint on a template.
- :class:`Resolver`: evaluates the intrinsic functions of a template for one stage, with the
  exports of the earlier stacks, so names, keys, user data and policies can be compared with
  what the code expects.
- :func:`aws_calls`: the AWS calls the code makes, found in its syntax tree (boto3 / aioboto3
  client methods, and the DynamoDB store's ``_call("operation", ...)`` dispatch), per function.
- :func:`iam_action`: the IAM action a client method needs.
- :func:`moto_subset`: what of a template moto's CloudFormation can create (types it models,
  and resources that reference only those), and what had to be left out.
"""

from __future__ import annotations

import ast
import base64
import functools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STACK_DIR = Path(__file__).resolve().parent / "stacks"
STACKS = ("network", "data", "media", "edge", "compute", "analytics", "observability")
"""The stacks in the order a team deploys them; each imports only from earlier ones."""
LINT_REGIONS = ("ap-southeast-1", "us-east-1")

PSEUDO = {
    "AWS::Region": "ap-southeast-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::StackName": "moosic",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::NoValue": None,
}


def stack_path(name: str) -> Path:
    return STACK_DIR / f"{name}.yaml"


def _plain(node: Any) -> Any:
    """cfn-lint's decoded nodes as plain dicts, lists and strings."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return node


def load(name: str) -> dict[str, Any]:
    """One stack's template, with the short forms (``!Ref``...) expanded (a fresh copy)."""
    path = stack_path(name)
    plain: dict[str, Any] = json.loads(_load(path, path.stat().st_mtime_ns))
    return plain


@functools.lru_cache(maxsize=32)
def _load(path: Path, mtime_ns: int) -> str:
    from cfnlint.decode import decode  # type: ignore[import-untyped]

    template, matches = decode(str(path))
    if matches or template is None:
        raise ValueError(f"{path.name}: {[str(m) for m in matches]}")
    return json.dumps(_plain(template))


def lint(name: str) -> list[str]:
    """cfn-lint's findings (errors, warnings and informational) on one stack."""
    from cfnlint.api import ManualArgs, lint_file  # type: ignore[import-untyped]

    matches = lint_file(stack_path(name), ManualArgs(regions=list(LINT_REGIONS)))
    return [str(m) for m in matches]


# -- evaluating templates ----------------------------------------------------------------------


class Unresolved(LookupError):
    """A value only AWS knows (a resource's id or attribute) with no stand-in given."""


_SUB_VAR = re.compile(r"\$\{([^!}][^}]*)\}")


@dataclass
class Resolver:
    """Evaluate a template's intrinsics for given parameters, imports and resource stand-ins."""

    template: dict[str, Any]
    parameters: Mapping[str, Any] = field(default_factory=dict)
    imports: Mapping[str, Any] = field(default_factory=dict)
    resource: Callable[[str, str | None], Any] | None = None
    """``(logical id, attribute or None for Ref) -> value``; None: such values are Unresolved."""

    def parameter(self, name: str) -> Any:
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.parameters:
            return self.parameters[name]
        declared = self.template.get("Parameters", {}).get(name)
        if declared is None:
            raise KeyError(name)
        if "Default" not in declared:
            raise Unresolved(f"parameter {name} has no value")
        default = declared["Default"]
        if declared.get("Type") == "CommaDelimitedList" and isinstance(default, str):
            return default.split(",")
        return default

    def _ref(self, name: str, attribute: str | None) -> Any:
        if attribute is None and (name in PSEUDO or name in self.template.get("Parameters", {})):
            return self.parameter(name)
        if name not in self.template.get("Resources", {}):
            raise KeyError(f"no resource {name}")
        if self.resource is None:
            raise Unresolved(f"{name}.{attribute}" if attribute else name)
        return self.resource(name, attribute)

    def condition(self, name: str) -> bool:
        return bool(self.value(self.template["Conditions"][name]))

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.value(v) for v in node]
        if not isinstance(node, dict):
            return node
        if len(node) != 1:
            return {k: self.value(v) for k, v in node.items()}
        ((key, arg),) = node.items()
        if key == "Ref":
            return self._ref(arg, None)
        if key == "Fn::GetAtt":
            name, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
            return self._ref(name, attribute)
        if key == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else arg
            values = {k: self.value(v) for k, v in variables.items()}

            def substitute(match: re.Match[str]) -> str:
                name = match.group(1)
                if name in values:
                    return str(values[name])
                if "." in name:
                    resource, attribute = name.split(".", 1)
                    return str(self._ref(resource, attribute))
                return str(self._ref(name, None))

            return _SUB_VAR.sub(substitute, text).replace("${!", "${")
        if key == "Fn::Join":
            separator, items = arg
            return separator.join(str(v) for v in self.value(items))
        if key == "Fn::Split":
            separator, text = arg
            return str(self.value(text)).split(separator)
        if key == "Fn::Select":
            index, items = arg
            return self.value(items)[int(self.value(index))]
        if key == "Fn::GetAZs":
            return [f"{PSEUDO['AWS::Region']}{z}" for z in "abc"]
        if key == "Fn::ImportValue":
            name = self.value(arg)
            if name not in self.imports:
                raise Unresolved(f"import {name}")
            return self.imports[name]
        if key == "Fn::If":
            condition, yes, no = arg
            return self.value(yes if self.condition(condition) else no)
        if key == "Fn::Equals":
            left, right = self.value(arg)
            return left == right
        if key == "Fn::Not":
            return not self.value(arg[0])
        if key == "Fn::Base64":
            return base64.b64encode(str(self.value(arg)).encode()).decode()
        return {key: self.value(arg)}


def exports(name: str, stage: str, stand_in: Callable[[str, str | None], Any]) -> dict[str, Any]:
    """A stack's exports for ``stage``, resource values taken from ``stand_in``."""
    template = load(name)
    resolver = Resolver(template, {"Stage": stage}, resource=stand_in)
    found = {}
    for output in template.get("Outputs", {}).values():
        if "Export" in output:
            found[resolver.value(output["Export"]["Name"])] = resolver.value(output["Value"])
    return found


def export_names(name: str, stage: str) -> set[str]:
    template = load(name)
    resolver = Resolver(template, {"Stage": stage})
    return {
        resolver.value(o["Export"]["Name"])
        for o in template.get("Outputs", {}).values()
        if "Export" in o
    }


def imported_names(template: dict[str, Any], stage: str) -> set[str]:
    resolver = Resolver(template, {"Stage": stage})
    return {resolver.value(arg) for arg in _find(template, "Fn::ImportValue")}


def _find(node: Any, key: str) -> Iterator[Any]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            yield from _find(v, key)
    elif isinstance(node, list):
        for v in node:
            yield from _find(v, key)


# -- the AWS calls the code makes ----------------------------------------------------------------

MEDIA_CLIENTS = frozenset({"s3", "sqs", "mediaconvert", "rekognition"})
"""Attribute names under which media/aws.py keeps its clients (``self.jobs.s3`` ...)."""
CLIENT_MODULES = {"gateway.mail.ses": "ses", "gateway.push.sns": "sns"}
"""Modules whose ``self._client`` is one AWS service's client (the notification sinks)."""
STORE_DISPATCH = frozenset({"_call", "_read"})
"""The DynamoDB store's call helpers: the first argument names the client method."""
TRANSACT_ITEM_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}
"""TransactWriteItems has no IAM action of its own: each item's action is checked."""


@dataclass(frozen=True, slots=True)
class Call:
    service: str
    method: str
    module: str
    function: str
    """Qualified name in its module (``AwsMedia.moderate``)."""
    line: int


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


class _Scanner(ast.NodeVisitor):
    def __init__(self, module: str, store: bool) -> None:
        self.module = module
        self.store = store
        self.scope: list[str] = []
        self.calls: list[Call] = []
        self.transact_keys: set[str] = set()

    def _visit_scope(self, node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_ClassDef = _visit_scope
    visit_FunctionDef = _visit_scope
    visit_AsyncFunctionDef = _visit_scope

    def _add(self, service: str, method: str, node: ast.AST) -> None:
        function = ".".join(self.scope) or "<module>"
        self.calls.append(Call(service, method, self.module, function, getattr(node, "lineno", 0)))

    def visit_Dict(self, node: ast.Dict) -> None:
        for key in node.keys:
            if isinstance(key, ast.Constant) and key.value in TRANSACT_ITEM_ACTIONS:
                self.transact_keys.add(str(key.value))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute):
            owner = func.value
            owner_name = (
                owner.attr
                if isinstance(owner, ast.Attribute)
                else owner.id
                if isinstance(owner, ast.Name)
                else None
            )
            if owner_name in MEDIA_CLIENTS:
                self._add(owner_name, func.attr, node)
            elif owner_name == "_client" and self.module in CLIENT_MODULES:
                self._add(CLIENT_MODULES[self.module], func.attr, node)
            elif self.store and owner_name in {"_client", "client"} and func.attr != "close":
                self._add("dynamodb", func.attr, node)
            elif (
                self.store
                and func.attr in STORE_DISPATCH
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                self._add("dynamodb", node.args[0].value, node)
                if func.attr == "_read":
                    self._add("dax", node.args[0].value, node)
        self.generic_visit(node)


@dataclass
class CodeCalls:
    calls: list[Call]
    transact_keys: set[str]

    def in_module(self, module: str) -> list[Call]:
        return [c for c in self.calls if c.module == module]


def aws_calls(packages: Iterable[str] = ("storage", "media", "gateway", "handlers")) -> CodeCalls:
    """Every AWS client call in the packages' source, by function."""
    calls: list[Call] = []
    keys: set[str] = set()
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = _module_name(path)
            scanner = _Scanner(module, store=module.startswith("storage.dynamodb"))
            scanner.visit(ast.parse(path.read_text(), str(path)))
            # ``s3.get(...)`` on an event record's dict is no call: keep API operations only.
            calls += [c for c in scanner.calls if botocore_operation(c.service, c.method)]
            if scanner.store:
                keys |= scanner.transact_keys
    return CodeCalls(calls, keys)


_SPECIAL_ACTIONS = {
    ("s3", "head_object"): ("s3:GetObject",),
    ("s3", "list_objects_v2"): ("s3:ListBucket",),
    # Signing makes no request; the phone's POST runs with the signer's permissions.
    ("s3", "generate_presigned_post"): ("s3:PutObject",),
    ("mediaconvert", "create_job"): ("mediaconvert:CreateJob", "iam:PassRole"),
    # Rekognition reads the S3 object with the caller's permissions.
    ("rekognition", "detect_moderation_labels"): (
        "rekognition:DetectModerationLabels",
        "s3:GetObject",
    ),
}


def camel(method: str) -> str:
    return "".join(part.capitalize() for part in method.split("_"))


def iam_action(call: Call, transact_keys: Iterable[str] = ()) -> tuple[str, ...]:
    """The IAM actions one call needs."""
    special = _SPECIAL_ACTIONS.get((call.service, call.method))
    if special is not None:
        return special
    if call.service == "dynamodb" and call.method == "transact_write_items":
        return tuple(sorted(TRANSACT_ITEM_ACTIONS[k] for k in transact_keys))
    return (f"{call.service}:{camel(call.method)}",)


def botocore_operation(service: str, method: str) -> bool:
    """Whether a client method is an operation of the service's API (or presigning)."""
    if method.startswith("generate_presigned"):
        return True
    import botocore.session
    from botocore import xform_name

    model_service = "dynamodb" if service == "dax" else service
    model = botocore.session.get_session().get_service_model(model_service)
    return method in {xform_name(op) for op in model.operation_names}


_CLI = re.compile(r"\baws\s+([a-z0-9-]+)\s+([a-z0-9-]+)")
_CLI_PREFIX = {"elbv2": "elasticloadbalancing"}
_CLI_SPECIAL = {("s3", "cp"): "s3:GetObject"}


def cli_actions(script: str) -> set[str]:
    """The IAM actions of the ``aws SERVICE COMMAND`` lines of a shell script."""
    found = set()
    for service, command in _CLI.findall(script):
        special = _CLI_SPECIAL.get((service, command))
        prefix = _CLI_PREFIX.get(service, service)
        found.add(special or f"{prefix}:{''.join(p.capitalize() for p in command.split('-'))}")
    return found


# -- IAM in the templates --------------------------------------------------------------------


def statements(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    found = document.get("Statement", [])
    return [found] if isinstance(found, dict) else list(found)


def allowed_actions(documents: Iterable[Mapping[str, Any]]) -> set[str]:
    actions: set[str] = set()
    for document in documents:
        for statement in statements(document):
            if statement.get("Effect") != "Allow":
                continue
            action = statement.get("Action", [])
            actions |= {action} if isinstance(action, str) else set(action)
    return actions


# -- what moto's CloudFormation can create -----------------------------------------------------


def _references(node: Any, resources: set[str]) -> set[str]:
    """Logical ids of resources a node refers to (Ref, GetAtt, Sub variables)."""
    found: set[str] = set()
    if isinstance(node, list):
        for v in node:
            found |= _references(v, resources)
    elif isinstance(node, dict):
        for key, arg in node.items():
            if key == "Ref" and isinstance(arg, str):
                found |= {arg} & resources
            elif key == "Fn::GetAtt":
                name = arg[0] if isinstance(arg, list) else str(arg).split(".", 1)[0]
                found |= {name} & resources
            elif key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                names = {m.split(".", 1)[0] for m in _SUB_VAR.findall(text)} - set(variables)
                found |= names & resources
                found |= _references(variables, resources)
            else:
                found |= _references(arg, resources)
    return found


@dataclass
class Subset:
    template: dict[str, Any]
    unmodelled: set[str]
    """Resources of types moto's CloudFormation does not model."""
    dependent: set[str]
    """Resources left out because they refer to one of those."""
    outputs: set[str]
    """Outputs left out for the same reason."""


MOTO_UNIMPLEMENTED_ATTRIBUTES = frozenset(
    {
        ("AWS::ElasticLoadBalancingV2::LoadBalancer", "CanonicalHostedZoneID"),
        ("AWS::ElasticLoadBalancingV2::LoadBalancer", "LoadBalancerFullName"),
        ("AWS::ElasticLoadBalancingV2::LoadBalancer", "SecurityGroups"),
        ("AWS::ElasticLoadBalancingV2::TargetGroup", "TargetGroupFullName"),
    }
)
"""Attributes moto fails on (NotImplementedError, or no get_cfn_attribute: moto/elbv2)."""


def _attributes(node: Any) -> set[tuple[str, str]]:
    """(logical id, attribute) pairs a node reads with GetAtt or a Sub variable."""
    found: set[tuple[str, str]] = set()
    if isinstance(node, list):
        for v in node:
            found |= _attributes(v)
    elif isinstance(node, dict):
        for key, arg in node.items():
            if key == "Fn::GetAtt":
                name, attribute = arg if isinstance(arg, list) else str(arg).split(".", 1)
                found.add((name, attribute))
            elif key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                found |= {
                    (m.split(".", 1)[0], m.split(".", 1)[1])
                    for m in _SUB_VAR.findall(text)
                    if "." in m and m not in variables
                }
                found |= _attributes(variables)
            else:
                found |= _attributes(arg)
    return found


def moto_subset(
    template: dict[str, Any], modelled: set[str], missing_imports: Mapping[str, Any], stage: str
) -> Subset:
    """The part of ``template`` moto can create, for ``stage``.

    ``missing_imports`` maps export names that an earlier subset could not export to the value
    imported instead (a stand-in of the same shape).
    """
    template = json.loads(json.dumps(template))
    resources: dict[str, Any] = template["Resources"]
    unmodelled = {n for n, r in resources.items() if r["Type"] not in modelled}

    def unimplemented(node: Any) -> bool:
        return any(
            (resources[name]["Type"], attribute) in MOTO_UNIMPLEMENTED_ATTRIBUTES
            for name, attribute in _attributes(node)
            if name in resources
        )

    dropped = set(unmodelled) | {n for n, body in resources.items() if unimplemented(body)}
    while True:
        more = {
            name
            for name, body in resources.items()
            if name not in dropped and _references(body, set(resources)) & dropped
        }
        if not more:
            break
        dropped |= more
    for name in dropped:
        del resources[name]
    for body in resources.values():
        depends = body.get("DependsOn")
        if isinstance(depends, str):
            depends = [depends]
        if depends is not None:
            kept = [d for d in depends if d not in dropped]
            if kept:
                body["DependsOn"] = kept
            else:
                del body["DependsOn"]
    outputs = template.get("Outputs", {})
    left_out = {n for n, o in outputs.items() if _references(o, dropped) or unimplemented(o)}
    for name in left_out:
        del outputs[name]
    stage_resolver = Resolver(template, {"Stage": stage})

    def replace(node: Any) -> Any:
        if isinstance(node, list):
            return [replace(v) for v in node]
        if isinstance(node, dict):
            if set(node) == {"Fn::ImportValue"}:
                try:
                    name = stage_resolver.value(node["Fn::ImportValue"])
                except Unresolved:
                    name = None
                if name in missing_imports:
                    return missing_imports[name]
            return {k: replace(v) for k, v in node.items()}
        return node

    template["Resources"] = replace(resources)
    return Subset(template, unmodelled, dropped - unmodelled, left_out)


def moto_modelled_types() -> set[str]:
    """Resource types moto's CloudFormation creates (the others it skips)."""
    from moto.cloudformation.parsing import get_model_map

    return set(get_model_map())


def user_data(template: dict[str, Any], launch_template: str, resolver: Resolver) -> str:
    data = template["Resources"][launch_template]["Properties"]["LaunchTemplateData"]
    return base64.b64decode(resolver.value(data["UserData"])).decode()


_ENV_LINE = re.compile(r"^\s*(?:echo \")?(MOOSIC_[A-Z0-9_]+)=(.*?)(?:\" >> \S+)?$", re.MULTILINE)


def moosic_settings(script: str) -> dict[str, str]:
    """The ``MOOSIC_*`` settings a user data script writes, values as written."""
    return {name: value for name, value in _ENV_LINE.findall(script)}


def all_moosic_names(script: str) -> set[str]:
    """Every ``MOOSIC_*`` name a script mentions being set (``NAME=``)."""
    return set(re.findall(r"\b(MOOSIC_[A-Z0-9_]+)=", script))


def json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


# -- stand-ins for what only AWS knows -------------------------------------------------------

_NAMED = {
    "AWS::S3::Bucket": "BucketName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::AutoScaling::AutoScalingGroup": "AutoScalingGroupName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Kinesis::Stream": "Name",
}


def stand_in(
    template: dict[str, Any], parameters: Mapping[str, Any]
) -> Callable[[str, str | None], Any]:
    """Plausible values of a template's resource ids and attributes, from their own names.

    Used where only the shape matters (a queue URL is an https URL, a DAX endpoint daxs://).
    """
    region, account = PSEUDO["AWS::Region"], PSEUDO["AWS::AccountId"]

    def value(name: str, attribute: str | None) -> Any:
        body = template["Resources"][name]
        kind = body["Type"]
        own = Resolver(template, parameters, resource=value)
        prop = _NAMED.get(kind)
        given = own.value(body["Properties"][prop]) if prop in body.get("Properties", {}) else None
        label = given or name.lower()
        if attribute is None:
            if kind == "AWS::SQS::Queue":
                return f"https://sqs.{region}.amazonaws.com/{account}/{label}"
            if kind == "AWS::IAM::ManagedPolicy":
                return f"arn:aws:iam::{account}:policy/{label}"
            if kind == "AWS::ElasticLoadBalancingV2::TargetGroup":
                return f"arn:aws:elasticloadbalancing:{region}:{account}:targetgroup/{name}/0123"
            return label if given else f"{name}-id"
        arns = {
            "AWS::IAM::Role": f"arn:aws:iam::{account}:role/{label}",
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{region}:{account}:table/{label}",
            "AWS::S3::Bucket": f"arn:aws:s3:::{label}",
            "AWS::SQS::Queue": f"arn:aws:sqs:{region}:{account}:{label}",
            "AWS::Kinesis::Stream": f"arn:aws:kinesis:{region}:{account}:stream/{label}",
        }
        if attribute == "Arn" and kind in arns:
            return arns[kind]
        special = {
            ("AWS::SQS::Queue", "QueueName"): label,
            ("AWS::S3::Bucket", "RegionalDomainName"): f"{label}.s3.{region}.amazonaws.com",
            ("AWS::DAX::Cluster", "ClusterDiscoveryEndpointURL"): (
                f"daxs://{name.lower()}.abc123.dax-clusters.{region}.amazonaws.com"
            ),
            ("AWS::ElastiCache::ReplicationGroup", "ConfigurationEndPoint.Address"): (
                f"clustercfg.{name.lower()}.abc123.{region}.cache.amazonaws.com"
            ),
            ("AWS::ElastiCache::ReplicationGroup", "ConfigurationEndPoint.Port"): "6379",
            ("AWS::CloudFront::Distribution", "DomainName"): "d111111abcdef8.cloudfront.net",
            ("AWS::EC2::SecurityGroup", "GroupId"): f"sg-{name.lower()}",
            ("AWS::EC2::LaunchTemplate", "LatestVersionNumber"): "1",
        }
        return special.get((kind, attribute), f"{name}.{attribute}")

    return value


def stack_exports(upto: str, stage: str) -> dict[str, Any]:
    """The exports of every stack before ``upto``, with stand-in values."""
    found: dict[str, Any] = {}
    for name in STACKS[: STACKS.index(upto)]:
        template = load(name)
        params = {"Stage": stage, **REQUIRED_PARAMETERS.get(name, {})}
        resolver = Resolver(template, params, found, stand_in(template, params))
        for output in template.get("Outputs", {}).values():
            if "Export" in output:
                found[resolver.value(output["Export"]["Name"])] = resolver.value(output["Value"])
    return found


def resolver_for(name: str, stage: str) -> Resolver:
    template = load(name)
    params = {"Stage": stage, **REQUIRED_PARAMETERS.get(name, {})}
    return Resolver(template, params, stack_exports(name, stage), stand_in(template, params))


REQUIRED_PARAMETERS: dict[str, dict[str, Any]] = {
    "network": {"CloudFrontOriginPrefixList": "pl-31a34658"},
    "edge": {
        "DomainName": "moosic.example.com",
        "HostedZoneId": "Z0123456789ABCDEFGHIJ",
        "CertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/edge",
        "PlaybackPublicKey": "-----BEGIN PUBLIC KEY-----\n...\n-----END PUBLIC KEY-----\n",
    },
    "compute": {
        "ArtifactBucket": "moosic-releases",
        "GatewayArtifactKey": "releases/moosic_gateway-0.1.0.tar.gz",
        "LambdaArtifactKey": "releases/moosic_upload_lambda-0.1.0.zip",
        "OriginCertificateArn": "arn:aws:acm:ap-southeast-1:123456789012:certificate/origin",
    },
}
"""Example values of the parameters without a default (what the README's deploy lines pass)."""
