#!/usr/bin/env python3
"""api_routes.py TEMPLATE: the HTTP API that CloudFormation would create from TEMPLATE, as
JSON in the shape of `gateway --print-routes`.

The template is transformed by the SAM translator (aws-sam-translator, what `sam deploy`
uses) and the routes are read from the OpenAPI body it generates: each path and method,
the function of its Lambda integration, the authorizer of its `security`, and each
authorizer's function, identity sources and result TTL (parameters at their defaults).
tests/tests/gateway.rs compares this with what the local gateway reads, so the gateway
cannot drift from a deployed API.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import iam_check  # noqa: E402  (the SAM translator run the IAM check uses)
import stack  # noqa: E402


def main() -> int:
    template_path = Path(sys.argv[1])
    source = stack.load_template(template_path)
    cfn = iam_check.transform(template_path, "tokenauth", "us-east-1")

    def binary(function_id: str) -> str:
        return source["Resources"][function_id]["Metadata"]["BuildProperties"]["Binary"]

    def parameter(value):
        if isinstance(value, dict) and "Ref" in value:
            return source["Parameters"][value["Ref"]]["Default"]
        return value

    [(api_name, api)] = [(k, r) for k, r in cfn["Resources"].items() if r["Type"] == "AWS::ApiGatewayV2::Api"]
    body = api["Properties"]["Body"]
    routes = []
    for path, methods in body["paths"].items():
        for method, operation in methods.items():
            uri = operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
            function_id = re.search(r"\$\{(\w+)\.Arn\}", uri).group(1)
            [security] = operation.get("security", [{"NONE": []}])
            [authorizer] = security.keys()
            routes.append({
                "method": "ANY" if method == "x-amazon-apigateway-any-method" else method.upper(),
                "path": path.lstrip("/") if path == "/$default" else path,
                "function": binary(function_id),
                "authorizer": None if authorizer == "NONE" else authorizer,
            })
    routes.sort(key=lambda r: (r["path"], r["method"]))
    authorizers = {}
    for name, scheme in body.get("components", {}).get("securitySchemes", {}).items():
        spec = scheme["x-amazon-apigateway-authorizer"]
        if spec.get("type") != "request" or spec.get("authorizerPayloadFormatVersion") != "2.0" \
                or spec.get("enableSimpleResponses") is not True:
            raise SystemExit(f"authorizer {name}: not a payload 2.0 request authorizer with simple responses")
        [template, names] = spec["authorizerUri"]["Fn::Sub"]
        function_id = names["__FunctionArn__"]["Fn::GetAtt"][0]
        authorizers[name] = {
            "function": binary(function_id),
            "identity_sources": spec.get("identitySource", []),
            "result_ttl_secs": int(parameter(spec.get("authorizerResultTtlInSeconds", 0))),
        }
    print(json.dumps({"name": api_name, "routes": routes, "authorizers": authorizers}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
