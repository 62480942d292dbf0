#!/usr/bin/env python3
"""iam_check.py TEMPLATE CALLS.json: is every recorded AWS call allowed by the role the
template gives its function, and is every permission granted used?

The template is transformed by the SAM translator (aws-sam-translator, the library the SAM
CLI deploys with), so the roles judged are the roles CloudFormation would create. Each
function role's inline statements are evaluated the way IAM evaluates identity policies
for these actions: an explicit Deny wins, else some Allow must match the action, the
resource and every condition (StringEquals, StringLike, ForAllValues:/ForAnyValue:
StringEquals; any other operator is refused rather than guessed).

CALLS.json (written by tests/tests/iam.rs):
  {"region": .., "account": .., "stack_name": ..,
   "functions": {"LoginFunction": [{"action": "dynamodb:GetItem",
                                    "resource": "arn:aws:dynamodb:..:table/UsersTable",
                                    "context": {"aws:ResourceTag/k": ["v"]}}, ...], ...}}
Resources are named as the template names them: `table/<LogicalId>`, `key/<LogicalId>`.

Prints a JSON report {"denied": [...], "unused": [...]} and exits 1 if either is non-empty.
A grant no recorded call uses is reported unless UNUSED_BY_DESIGN explains it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stack  # noqa: E402  (the template loader the local stack uses)

# (function, action): why a grant no test exercises is still needed.
UNUSED_BY_DESIGN: dict[tuple[str, str], str] = {}


def transform(template_path: Path, stack_name: str, region: str) -> dict:
    from samtranslator.translator.transform import transform as sam_transform

    os.environ.setdefault("AWS_DEFAULT_REGION", region)
    template = stack.load_template(template_path)
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://placeholder/code.zip"  # as `sam package` leaves it

    class NoManagedPolicies:
        def load(self) -> dict:
            return {}

    return sam_transform(template, {"TokenIssuer": "https://auth.example.com", "AWS::StackName": stack_name},
                         NoManagedPolicies())


class Resolver:
    """Intrinsic functions to strings, naming each resource by its logical id."""

    def __init__(self, cfn: dict, stack_name: str, region: str, account: str):
        self.cfn, self.stack_name, self.region, self.account = cfn, stack_name, region, account

    def arn(self, logical: str) -> str:
        kind = self.cfn["Resources"][logical]["Type"]
        return {
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{self.region}:{self.account}:table/{logical}",
            "AWS::KMS::Key": f"arn:aws:kms:{self.region}:{self.account}:key/{logical}",
            "AWS::Lambda::Function": f"arn:aws:lambda:{self.region}:{self.account}:function:{logical}",
        }[kind]

    def pseudo(self, name: str) -> str:
        return {"AWS::Partition": "aws", "AWS::Region": self.region, "AWS::AccountId": self.account,
                "AWS::StackName": self.stack_name, "AWS::URLSuffix": "amazonaws.com"}[name]

    def __call__(self, value):
        if isinstance(value, list):
            return [self(v) for v in value]
        if not isinstance(value, dict):
            return value
        if "Ref" in value:
            return self.pseudo(value["Ref"]) if value["Ref"].startswith("AWS::") else value["Ref"]
        if "Fn::GetAtt" in value:
            logical, attribute = value["Fn::GetAtt"]
            assert attribute == "Arn", value
            return self.arn(logical)
        if "Fn::Sub" in value:
            text = value["Fn::Sub"]
            out, rest = "", text
            while "${" in rest:
                before, _, after = rest.partition("${")
                name, _, rest = after.partition("}")
                if name.startswith("AWS::"):
                    out += before + self.pseudo(name)
                elif name.endswith(".Arn"):
                    out += before + self.arn(name[: -len(".Arn")])
                else:
                    out += before + name
            return out + rest
        return {k: self(v) for k, v in value.items()}


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def condition_holds(condition: dict, context: dict[str, list[str]]) -> bool:
    for operator, tests in condition.items():
        for key, allowed in tests.items():
            allowed = [str(a) for a in as_list(allowed)]
            values = context.get(key)
            if operator == "StringEquals":
                if not values or not all(v in allowed for v in values):
                    return False
            elif operator == "StringLike":
                if not values or not all(any(fnmatch.fnmatchcase(v, a) for a in allowed) for v in values):
                    return False
            elif operator == "ForAllValues:StringEquals":
                if values and not all(v in allowed for v in values):
                    return False
            elif operator == "ForAnyValue:StringEquals":
                if not values or not any(v in allowed for v in values):
                    return False
            else:
                raise SystemExit(f"condition operator {operator} is not evaluated by iam_check.py")
    return True


def statement_allows(statement: dict, call: dict) -> bool:
    actions = [a.lower() for a in as_list(statement.get("Action", []))]
    resources = as_list(statement.get("Resource", []))
    return (
        any(fnmatch.fnmatchcase(call["action"].lower(), a) for a in actions)
        and any(fnmatch.fnmatchcase(call["resource"], r) for r in resources)
        and condition_holds(statement.get("Condition", {}), call.get("context", {}))
    )


def statements_of(cfn: dict, function: str, resolve: Resolver) -> list[dict]:
    role = cfn["Resources"][f"{function}Role"]["Properties"]
    out = []
    for policy in role.get("Policies", []):
        for statement in as_list(policy["PolicyDocument"]["Statement"]):
            out.append(resolve(statement))
    return out


def check(template_path: Path, calls: dict) -> dict:
    region, account, stack_name = calls["region"], calls["account"], calls["stack_name"]
    cfn = transform(template_path, stack_name, region)
    resolve = Resolver(cfn, stack_name, region, account)
    functions = sorted(k for k, v in cfn["Resources"].items() if v["Type"] == "AWS::Lambda::Function")
    missing = sorted(set(functions) - set(calls["functions"]))
    if missing:
        raise SystemExit(f"no calls recorded for {missing}: every function's paths must be run")
    denied, unused = [], []
    for function in functions:
        statements = statements_of(cfn, function, resolve)
        recorded = calls["functions"][function]
        for call in recorded:
            if any(s["Effect"] == "Deny" and statement_allows(s, call) for s in statements):
                denied.append({"function": function, **call, "why": "explicitly denied"})
            elif not any(s["Effect"] == "Allow" and statement_allows(s, call) for s in statements):
                denied.append({"function": function, **call})
        for statement in statements:
            if statement["Effect"] != "Allow":
                continue
            for action in as_list(statement["Action"]):
                for resource in as_list(statement["Resource"]):
                    narrow = {**statement, "Action": [action], "Resource": [resource]}
                    if any(statement_allows(narrow, call) for call in recorded):
                        continue
                    if (function, action) in UNUSED_BY_DESIGN:
                        continue
                    unused.append({"function": function, "sid": statement.get("Sid"), "action": action,
                                   "resource": resource})
    return {"denied": denied, "unused": unused}


def main() -> int:
    template_path, calls_path = Path(sys.argv[1]), Path(sys.argv[2])
    report = check(template_path, json.loads(calls_path.read_text()))
    print(json.dumps(report, indent=1, sort_keys=True))
    return 1 if report["denied"] or report["unused"] else 0


if __name__ == "__main__":
    sys.exit(main())
