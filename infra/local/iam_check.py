#!/usr/bin/env python3
"""iam_check.py TEMPLATE CALLS.json: is every recorded AWS call allowed by the role the
template gives its function (and, for KMS, by the key's policy), and is every permission
granted used?

The template is transformed by the SAM translator (aws-sam-translator, the library the SAM
CLI deploys with), so the roles judged are the roles CloudFormation would create. Each
function role's inline statements are evaluated the way IAM evaluates identity policies
for these actions: an explicit Deny wins, else some Allow must match the action, the
resource and every condition (StringEquals, StringLike, Bool, ForAllValues:/ForAnyValue:
StringEquals; a key the call does not carry fails all but ForAllValues:; any other operator
is refused rather than guessed).

A call on a KMS key is judged as KMS judges it for a principal of the key's own account:
an explicit Deny in the key policy or the identity policy refuses it; else a key-policy
statement that names the function's role allows it on its own (no identity grant needed);
else a key-policy statement that allows the account root the action delegates it to IAM,
and then the identity policy must allow it too; else it is refused, whatever IAM says.
The key policies are the template's `AWS::KMS::Key` resources' (`key/<LogicalId>`) and,
for every other key (the ones key rotation creates), the document the template renders
into the key-rotation function's `SIGNING_KEY_POLICY`; CALLS.json may give a key its own
policy under "key_policies" (a key of the account that is not the stack's). CreateKey,
and the tagging authorised with it, concern a key that does not exist yet
(`key/a-new-key`): the identity policy alone decides, as in KMS.

Besides the calls, each key policy is checked for what no call shows (reported under
"key_policy"): the account root (the one principal a key policy delegates to IAM through)
may administer a key but never use it cryptographically, and KMS's policy lockout check
holds for the signing key policy (the key-rotation role, which creates keys with it, may
put a new policy on them).

CALLS.json (written by tests/tests/iam.rs):
  {"region": .., "account": .., "stack_name": ..,
   "functions": {"LoginFunction": [{"action": "dynamodb:GetItem",
                                    "resource": "arn:aws:dynamodb:..:table/UsersTable",
                                    "context": {"aws:ResourceTag/k": ["v"]}}, ...], ...}}
Resources are named as the template names them: `table/<LogicalId>`, `key/<LogicalId>`.
A ReEncrypt is two calls, as KMS authorises it: kms:ReEncryptFrom on the source key with the
source encryption context, kms:ReEncryptTo on the destination key with the destination's.

Prints a JSON report {"denied": [...], "unused": [...], "key_policy": [...]} and exits 1 if
any is non-empty. A grant no recorded call uses (an identity statement, or a key-policy
statement naming a function's role) is reported unless UNUSED_BY_DESIGN explains it.
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
UNUSED_BY_DESIGN: dict[tuple[str, str], str] = {
    ("KeyRotationFunction", "kms:PutKeyPolicy"):
        "never called: KMS's policy lockout check refuses CreateKey with a key policy that would not let the "
        "caller put the key's next one (the key policy problems check that it does)",
    ("IntrospectFunction", "dynamodb:PutItem"):
        "the replay record of a private_key_jwt client assertion (RFC 7523 §3), which introspection accepts as the "
        "token endpoint does; unused only until private_key_jwt client authentication is merged (issue 21), when "
        "the IAM test's introspection path authenticates with an assertion and this entry goes",
}


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


NO_VALUE = object()  # AWS::NoValue: the element or property is left out

# What the account root may do on a key without using it: anything else is use.
CRYPTOGRAPHIC = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey",
                 "kms:GenerateDataKeyPair", "kms:GenerateDataKeyWithoutPlaintext",
                 "kms:GenerateDataKeyPairWithoutPlaintext", "kms:Sign", "kms:Verify", "kms:GenerateMac",
                 "kms:VerifyMac", "kms:DeriveSharedSecret", "kms:CreateGrant"]


class Resolver:
    """Intrinsic functions to strings, naming each resource by its logical id; parameters at
    their defaults unless `parameters` says otherwise."""

    def __init__(self, cfn: dict, stack_name: str, region: str, account: str, parameters: dict | None = None):
        self.cfn, self.stack_name, self.region, self.account = cfn, stack_name, region, account
        self.parameters = parameters or {}

    def arn(self, logical: str) -> str:
        kind = self.cfn["Resources"][logical]["Type"]
        return {
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{self.region}:{self.account}:table/{logical}",
            "AWS::KMS::Key": f"arn:aws:kms:{self.region}:{self.account}:key/{logical}",
            "AWS::Lambda::Function": f"arn:aws:lambda:{self.region}:{self.account}:function:{logical}",
            "AWS::IAM::Role": f"arn:aws:iam::{self.account}:role/{logical}",
        }[kind]

    def parameter(self, name: str):
        if name in self.parameters:
            return self.parameters[name]
        declared = self.cfn.get("Parameters", {}).get(name)
        return None if declared is None else declared.get("Default")

    def condition(self, value) -> bool:
        if isinstance(value, str):
            return self.condition(self.cfn["Conditions"][value])
        (function, args), = value.items()
        if function == "Fn::Not":
            return not self.condition(args[0])
        if function == "Fn::And":
            return all(self.condition(a) for a in args)
        if function == "Fn::Or":
            return any(self.condition(a) for a in args)
        if function == "Fn::Equals":
            return self(args[0]) == self(args[1])
        if function == "Condition":
            return self.condition(args)
        raise SystemExit(f"condition function {function} is not evaluated by iam_check.py")

    def pseudo(self, name: str) -> str:
        return {"AWS::Partition": "aws", "AWS::Region": self.region, "AWS::AccountId": self.account,
                "AWS::StackName": self.stack_name, "AWS::URLSuffix": "amazonaws.com"}[name]

    def __call__(self, value):
        if isinstance(value, list):
            return [v for v in (self(v) for v in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if "Ref" in value:
            name = value["Ref"]
            if name == "AWS::NoValue":
                return NO_VALUE
            if name.startswith("AWS::"):
                return self.pseudo(name)
            return name if self.parameter(name) is None else str(self.parameter(name))
        if "Fn::If" in value:
            condition, then, otherwise = value["Fn::If"]
            return self(then if self.condition(condition) else otherwise)
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
        return {k: v for k, v in ((k, self(v)) for k, v in value.items()) if v is not NO_VALUE}


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
            elif operator == "Bool":
                # "true"/"false", whatever the case (YAML may have made a boolean of it).
                allowed = [a.lower() for a in allowed]
                if not values or not all(v.lower() in allowed for v in values):
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


def identity_allows(statements: list[dict], call: dict) -> tuple[bool, str]:
    if any(s["Effect"] == "Deny" and statement_allows(s, call) for s in statements):
        return False, "explicitly denied by the role"
    if any(s["Effect"] == "Allow" and statement_allows(s, call) for s in statements):
        return True, ""
    return False, "no statement of the role allows it"


def principals(statement: dict) -> list[str]:
    principal = statement.get("Principal", {})
    if principal == "*":
        return ["*"]
    return [str(p) for p in as_list(principal.get("AWS", []))]


def is_root(principal: str, account: str) -> bool:
    return principal in (account, f"arn:aws:iam::{account}:root")


def key_policy_decision(policy: dict, principal: str, account: str, call: dict) -> str:
    """`deny`, `allow` (the policy names the principal), `delegate` (it allows the account
    root, so IAM decides) or `none`."""
    statements = [s for s in as_list(policy.get("Statement", [])) if statement_allows({**s, "Resource": "*"}, call)]
    if any(s["Effect"] == "Deny" and (principal in principals(s) or "*" in principals(s)) for s in statements):
        return "deny"
    allows = [s for s in statements if s["Effect"] == "Allow"]
    if any(principal in principals(s) or "*" in principals(s) for s in allows):
        return "allow"
    if any(any(is_root(p, account) for p in principals(s)) for s in allows):
        return "delegate"
    return "none"


def kms_key(resource: str) -> str | None:
    """The key a KMS resource ARN names (`None`: not a key, or a key being created)."""
    if ":kms:" not in resource or ":key/" not in resource:
        return None
    key = resource.rsplit(":key/", 1)[1]
    return None if key == "a-new-key" else key


class KeyPolicies:
    """The key policy of each key a call can name."""

    def __init__(self, cfn: dict, resolve: Resolver, overrides: dict[str, dict]):
        self.template = {logical: resolve(r["Properties"]["KeyPolicy"])
                         for logical, r in cfn["Resources"].items() if r["Type"] == "AWS::KMS::Key"}
        rendered = resolve(cfn["Resources"]["KeyRotationFunction"]["Properties"]["Environment"]["Variables"]
                           ["SIGNING_KEY_POLICY"])
        self.signing = json.loads(rendered)
        self.overrides = overrides

    def of(self, resource: str) -> tuple[str, dict] | None:
        """(which policy, the document) for a call's resource; None for no key policy."""
        key = kms_key(resource)
        if key is None:
            return None
        if resource in self.overrides:
            return resource, self.overrides[resource]
        if key in self.template:
            return key, self.template[key]
        return "SIGNING_KEY_POLICY", self.signing

    def all(self) -> dict[str, dict]:
        return {**self.template, "SIGNING_KEY_POLICY": self.signing}


def judge_call(call: dict, role_arn: str, account: str, statements: list[dict], keys: KeyPolicies) -> str | None:
    """Why the call is refused; None if allowed."""
    allowed, why = identity_allows(statements, call)
    key = keys.of(call["resource"])
    if key is None:
        return None if allowed else why
    name, policy = key
    decision = key_policy_decision(policy, role_arn, account, call)
    if decision == "deny" or why == "explicitly denied by the role":
        return f"explicitly denied (key policy {name} or the role)"
    if decision == "allow":
        return None
    if decision == "delegate":
        return None if allowed else f"key policy {name} delegates to IAM and {why}"
    return f"key policy {name} allows neither the role nor the account"


def key_policy_problems(keys: KeyPolicies, account: str, rotation_role: str, rotation: list[dict]) -> list[dict]:
    problems = []
    for name, policy in keys.all().items():
        for action in CRYPTOGRAPHIC:
            for statement in as_list(policy.get("Statement", [])):
                if (statement["Effect"] == "Allow" and any(is_root(p, account) or p == "*" for p in principals(statement))
                        and any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in as_list(statement["Action"]))):
                    problems.append({"key": name, "sid": statement.get("Sid"), "action": action,
                                     "why": "the account root may use the key: any IAM grant in the account could"})
    # KMS's policy lockout check: whoever creates a key with a policy must be able to put
    # the next one (the key-rotation role creates the set's keys).
    probe = {"action": "kms:PutKeyPolicy", "resource": "arn:aws:kms:any:key/any", "context": {}}
    decision = key_policy_decision(keys.signing, rotation_role, account, probe)
    if not (decision == "allow" or (decision == "delegate" and identity_allows(rotation, probe)[0])):
        problems.append({"key": "SIGNING_KEY_POLICY", "action": "kms:PutKeyPolicy", "why":
                         "KMS refuses CreateKey with this policy (lockout check): the key-rotation role could "
                         "not put the key's next policy"})
    return problems


def check(template_path: Path, calls: dict) -> dict:
    region, account, stack_name = calls["region"], calls["account"], calls["stack_name"]
    cfn = transform(template_path, stack_name, region)
    resolve = Resolver(cfn, stack_name, region, account, calls.get("parameters"))
    keys = KeyPolicies(cfn, resolve, calls.get("key_policies", {}))
    # The template's own functions (its serverless ones). The custom resource's inline
    # function (KeySetVerifyKeyFunction) runs only while CloudFormation deploys: no test
    # records its one call, the kms:GetPublicKey its key's policy grants.
    declared = stack.load_template(template_path)["Resources"]
    functions = sorted(k for k, v in declared.items() if v["Type"] == "AWS::Serverless::Function")
    missing = sorted(set(functions) - set(calls["functions"]))
    if missing:
        raise SystemExit(f"no calls recorded for {missing}: every function's paths must be run")
    denied, unused = [], []
    for function in functions:
        statements = statements_of(cfn, function, resolve)
        role_arn = resolve.arn(f"{function}Role")
        recorded = calls["functions"][function]
        for call in recorded:
            why = judge_call(call, role_arn, account, statements, keys)
            if why is not None:
                denied.append({"function": function, **call, "why": why})
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
        # Key-policy grants to this role: used by some call on a key under that policy.
        for name, policy in keys.all().items():
            for statement in as_list(policy.get("Statement", [])):
                if statement["Effect"] != "Allow" or role_arn not in principals(statement):
                    continue
                for action in as_list(statement["Action"]):
                    narrow = {**statement, "Action": [action], "Resource": "*"}
                    used = any(keys.of(c["resource"]) is not None and keys.of(c["resource"])[0] == name
                               and statement_allows(narrow, {**c, "resource": "*"}) for c in recorded)
                    if not used and (function, action) not in UNUSED_BY_DESIGN:
                        unused.append({"function": function, "sid": statement.get("Sid"), "action": action,
                                       "key_policy": name})
    rotation = statements_of(cfn, "KeyRotationFunction", resolve)
    problems = key_policy_problems(keys, account, resolve.arn("KeyRotationFunctionRole"), rotation)
    return {"denied": denied, "unused": unused, "key_policy": problems}


def main() -> int:
    template_path, calls_path = Path(sys.argv[1]), Path(sys.argv[2])
    report = check(template_path, json.loads(calls_path.read_text()))
    print(json.dumps(report, indent=1, sort_keys=True))
    return 1 if report["denied"] or report["unused"] or report["key_policy"] else 0


if __name__ == "__main__":
    sys.exit(main())
