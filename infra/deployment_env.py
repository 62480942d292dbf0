#!/usr/bin/env python3
"""deployment_env.py STACK: prints `export NAME=value` lines of a deployed stack's
variables, as the key-rotation function has them (its table names, key ids, issuer,
audience...), for `authctl` to run against the deployment with your own AWS credentials:

    eval "$(.local/venv/bin/python infra/deployment_env.py tokenauth)"

The same as the runbook's `aws lambda get-function-configuration` recipe
(docs/operations.md), with boto3 from the venv, so `make deploy` needs no AWS CLI.
"""

from __future__ import annotations

import shlex
import sys

import boto3


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    stack = sys.argv[1]
    outputs = boto3.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    function = next((o["OutputValue"] for o in outputs if o["OutputKey"] == "KeyRotationFunctionName"), None)
    if function is None:
        print(f"stack {stack} has no KeyRotationFunctionName output", file=sys.stderr)
        return 1
    variables = boto3.client("lambda").get_function_configuration(FunctionName=function)["Environment"]["Variables"]
    sys.stdout.write("".join(f"export {name}={shlex.quote(value)}\n" for name, value in sorted(variables.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
