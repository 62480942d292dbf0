#!/usr/bin/env python3
"""cost.py [OUT]: the cost and scale model, docs/cost.md, from figures measured here.

Measured (the script refuses to run without them):
  .local/cost/measured.json            tests/tests/cost.rs: per request its AWS calls, round
                                       trips, DynamoDB capacity (DynamoDB Local's accounting)
                                       and KMS requests
  target/criterion/login/argon2id_verify              argon2id verification on this machine
  target/criterion/authorizer/handler_http_api_v2_ES256  the authorizer's handler
  infra/template.yaml                  each function's memory, the API throttle, the poll

Typed, and named as such in the output: AWS list prices (us-east-1), the in-region round
trip times DESIGN.md gives, Lambda's CPU share per MB, and the usage profile of a monthly
active user for the Cognito comparison.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import stack  # noqa: E402

# --- typed: AWS list prices, us-east-1, as read on the pricing pages (November 2026) -----
PRICES = {
    "lambda_request": 0.20 / 1e6,
    "lambda_gb_second_x86_64": 0.0000166667,
    "lambda_gb_second_arm64": 0.0000133334,
    "http_api_request": 1.00 / 1e6,
    "dynamodb_wru": 0.625 / 1e6,
    "dynamodb_rru": 0.125 / 1e6,
    "kms_asymmetric_request": 0.15 / 1e4,
    "cloudwatch_logs_gb": 0.50,
    # Amazon Cognito user pools: per MAU above the free tier, and per M2M token request.
    "cognito_lite_mau": 0.0055,
    "cognito_essentials_mau": 0.015,
    "cognito_m2m_token_request": 2.25 / 1e6,
}
# --- typed: facts DESIGN.md gives ---------------------------------------------------------
DYNAMODB_ROUND_TRIP_MS = 5.0  # "single-digit milliseconds inside AWS"
KMS_SIGN_MS = 13.0  # "~13 ms reported"
FULL_CORE_MB = 1769  # "one full vCPU at 1,769 MB"
KMS_ECC_SIGN_PER_SECOND = 1000  # the account-and-region quota DESIGN.md quotes
PARTITION_WRITES_PER_SECOND, PARTITION_READS_PER_SECOND = 1000, 3000
# A conditional write whose condition fails is billed as a write (DynamoDB developer guide,
# condition expressions); DynamoDB Local answers the refusal without ConsumedCapacity.
REFUSED_CONDITIONAL_WRITE_UNITS = 1.0
THROTTLED_LOG_BYTES = 250  # one EMF line (SourceThrottled), no audit line
LOG_BYTES_PER_EVENT = 550  # an audit line and an EMF line per login or refresh (sizes seen in tests/tests/emf.rs)
LAMBDA_CONCURRENCY = 1000  # the default account quota
# --- typed: a monthly active user, for the comparison with Cognito ------------------------
PROFILE = {"logins": 4, "refreshes": 240, "api_calls": 2000, "authorizer_cache_hit": 0.5}


def criterion_median_ms(group: str, bench: str) -> float:
    path = ROOT / "target" / "criterion" / group / bench / "new" / "estimates.json"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run `make bench` first (make cost does)")
    return json.loads(path.read_text())["median"]["point_estimate"] / 1e6


def template_facts() -> dict:
    t = stack.load_template()
    default_mb = t["Globals"]["Function"]["MemorySize"]
    memory = {name: r["Properties"].get("MemorySize", default_mb) for name, r in t["Resources"].items()
              if r["Type"] == "AWS::Serverless::Function"}
    route = t["Resources"]["HttpApi"]["Properties"]["DefaultRouteSettings"]
    poll = t["Parameters"]["RevocationPollSecs"]["Default"]
    arch = t["Parameters"]["Architecture"]["Default"]
    return {"memory": memory, "throttle_rate": route["ThrottlingRateLimit"], "poll_secs": poll, "arch": arch}


def cpu_ms(full_core_ms: float, memory_mb: int) -> float:
    return full_core_ms * max(1.0, FULL_CORE_MB / memory_mb)


def network_ms(request: dict) -> float:
    trips = request["round_trips"]
    if request["kms_requests"]:
        return (trips - 1) * DYNAMODB_ROUND_TRIP_MS + max(KMS_SIGN_MS, DYNAMODB_ROUND_TRIP_MS)
    return trips * DYNAMODB_ROUND_TRIP_MS


def per_million(request: dict, duration_ms: float, memory_mb: int, arch: str, log_bytes: int) -> dict:
    billed_ms = max(1, math.ceil(duration_ms))
    gb_s = billed_ms / 1000 * memory_mb / 1024
    lines = {
        "Lambda requests": PRICES["lambda_request"],
        "Lambda duration": gb_s * PRICES[f"lambda_gb_second_{arch}"],
        "API Gateway": PRICES["http_api_request"],
        "DynamoDB writes": request["write_units"] * PRICES["dynamodb_wru"],
        "DynamoDB reads": request["read_units"] * PRICES["dynamodb_rru"],
        "KMS": request["kms_requests"] * PRICES["kms_asymmetric_request"],
        "CloudWatch Logs": log_bytes / 1e9 * PRICES["cloudwatch_logs_gb"],
    }
    return {"billed_ms": billed_ms, "lines": {k: v * 1e6 for k, v in lines.items()}}


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "cost.md"
    measured_path = ROOT / ".local" / "cost" / "measured.json"
    if not measured_path.exists():
        raise SystemExit(f"{measured_path} is missing: run the tests first (make cost does)")
    m = json.loads(measured_path.read_text())
    facts = template_facts()
    arch = facts["arch"]
    argon2_ms = criterion_median_ms("login", "argon2id_verify")
    handler_ms = criterion_median_ms("authorizer", "handler_http_api_v2_ES256")
    mem = facts["memory"]

    login_ms = cpu_ms(argon2_ms, mem["LoginFunction"]) + network_ms(m["login"]) + 1.0
    refresh_ms = network_ms(m["refresh"]) + 1.0
    authorizer_ms = cpu_ms(handler_ms, mem["AuthorizerFunction"])
    throttled = dict(m["login_throttled"])
    throttled["write_units"] = max(throttled["write_units"], REFUSED_CONDITIONAL_WRITE_UNITS)
    throttled_ms = network_ms(throttled) + 1.0
    rows = {
        "login": per_million(m["login"], login_ms, mem["LoginFunction"], arch, LOG_BYTES_PER_EVENT),
        "login refused by the per-source limit": per_million(throttled, throttled_ms, mem["LoginFunction"], arch,
                                                             THROTTLED_LOG_BYTES),
        "refresh": per_million(m["refresh"], refresh_ms, mem["RefreshFunction"], arch, LOG_BYTES_PER_EVENT),
        "authorizer call": per_million(m["authorizer_request"], authorizer_ms, mem["AuthorizerFunction"], arch, 0),
    }
    # An authorizer call is not an API request of its own (API Gateway bills the request it
    # authorises); the protected API request is billed once, below, per API call.
    rows["authorizer call"]["lines"]["API Gateway"] = 0.0

    def total(row):
        return sum(row["lines"].values())

    per_mau = (
        PROFILE["logins"] * total(rows["login"])
        + PROFILE["refreshes"] * total(rows["refresh"])
        + PROFILE["api_calls"] * (1 - PROFILE["authorizer_cache_hit"]) * total(rows["authorizer call"])
    ) / 1e6
    # Limits as traffic grows.
    signs_per_second = KMS_ECC_SIGN_PER_SECOND
    poll_reads = m["authorizer_poll"]["read_units"] or 1.0
    instances_by_partition = PARTITION_READS_PER_SECOND * facts["poll_secs"] / poll_reads
    authorizer_rps_per_instance = 1000.0 / max(1.0, authorizer_ms)
    lambda_rps = LAMBDA_CONCURRENCY * authorizer_rps_per_instance

    lines = [
        "# Cost and scale",
        "",
        "Generated by `infra/local/cost.py` (`make cost`); do not edit by hand. Measured inputs:",
        f"`.local/cost/measured.json` from `tests/tests/cost.rs` (measured {m['measured_at']}, Unix seconds), the",
        "criterion medians of `make bench`, and `infra/template.yaml`. Prices and round-trip times",
        "are typed in the script, named below, and must be checked before a decision.",
        "",
        "## What one request consumes (measured)",
        "",
        "| request | AWS calls | round trips | DynamoDB read / write units | KMS requests |",
        "|---|---|---|---|---|",
    ]
    for name in ["login", "login_failed", "login_throttled", "refresh", "authorizer_request", "authorizer_poll"]:
        r = m[name]
        lines.append(f"| {name.replace('_', ' ')} | {', '.join(r['calls']) or 'none'} | {r['round_trips']} | "
                     f"{r['read_units']:g} / {r['write_units']:g} | {r['kms_requests']} |")
    lines += [
        "",
        "Capacity is DynamoDB Local's accounting of each call (`ReturnConsumedCapacity`); it",
        "reports one total per call, so a transaction's condition checks are counted as write",
        "units, the dearer kind. Login and refresh begin with the per-source limit's conditional",
        "UpdateItem (1 write unit). A login the limit refuses (`login throttled`) is that one call;",
        "DynamoDB Local answers the refused write without its capacity, but DynamoDB bills a failed",
        f"condition as a write, so the model counts {REFUSED_CONDITIONAL_WRITE_UNITS:g} write unit for it.",
        "",
        "## Duration and price per million",
        "",
        f"CPU measured on this machine, scaled to each function's memory ({FULL_CORE_MB} MB = one vCPU):",
        f"argon2id {argon2_ms:.1f} ms on a full core, {cpu_ms(argon2_ms, mem['LoginFunction']):.1f} ms at"
        f" {mem['LoginFunction']} MB; the authorizer's handler {handler_ms * 1000:.0f} µs,"
        f" {authorizer_ms * 1000:.0f} µs at {mem['AuthorizerFunction']} MB.",
        f"Network, typed from DESIGN.md: {DYNAMODB_ROUND_TRIP_MS:g} ms per DynamoDB round trip, {KMS_SIGN_MS:g} ms"
        f" for kms:Sign. Architecture: {arch} (the template's default). Billed in 1 ms steps.",
        "",
        "| per million | billed ms | Lambda requests | Lambda duration | API Gateway | DynamoDB | KMS | Logs | **total** |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        l = row["lines"]
        lines.append(
            f"| {name} | {row['billed_ms']} | ${l['Lambda requests']:.2f} | ${l['Lambda duration']:.2f} | "
            f"${l['API Gateway']:.2f} | ${l['DynamoDB writes'] + l['DynamoDB reads']:.2f} | ${l['KMS']:.2f} | "
            f"${l['CloudWatch Logs']:.2f} | **${total(row):.2f}** |")
    flood = total(rows["login refused by the per-source limit"])
    lines += [
        "",
        f"A flood from one address: past its limit each login costs ${flood:.2f} per million (one write,"
        f" {rows['login refused by the per-source limit']['billed_ms']} ms billed, no argon2, no KMS) against"
        f" ${total(rows['login']):.2f} for a login that reaches the password check.",
        "",
        "The protected API request itself (API Gateway $1.00 per million, and its backend) comes",
        "on top of an authorizer call, whether the answer was cached or not.",
        "",
        "## Against Amazon Cognito",
        "",
        f"A monthly active user, typed: {PROFILE['logins']} logins, {PROFILE['refreshes']} refreshes (a 15-minute token",
        f"kept fresh for 60 hours), {PROFILE['api_calls']} API calls of which"
        f" {int(PROFILE['authorizer_cache_hit'] * 100)} % hit API Gateway's authorizer cache.",
        "",
        "| per month | 10 000 MAU | 100 000 MAU | 1 000 000 MAU |",
        "|---|---|---|---|",
    ]

    def fmt(x):
        return f"${x:,.0f}"

    lines.append("| tokenauth (this model) | " + " | ".join(fmt(per_mau * n) for n in (1e4, 1e5, 1e6)) + " |")
    for tier in ("lite", "essentials"):
        price = PRICES[f"cognito_{tier}_mau"]
        lines.append(f"| Cognito {tier.capitalize()} (${price}/MAU, free tier not counted) | "
                     + " | ".join(fmt(price * n) for n in (1e4, 1e5, 1e6)) + " |")
    lines += [
        "",
        f"Per MAU: tokenauth ${per_mau:.5f}, Cognito Lite ${PRICES['cognito_lite_mau']}, Essentials"
        f" ${PRICES['cognito_essentials_mau']}. Cognito's price covers more than tokens (hosted UI, MFA,",
        "federation); ours covers what this service does. Machine-to-machine tokens: Cognito"
        f" ${PRICES['cognito_m2m_token_request'] * 1e6:.2f} per million token requests as we read its pricing page (one billing",
        "reference states the rate per thousand: verify) plus a monthly fee per app client, against"
        f" ${total(rows['refresh']):.2f} per million refreshes here (the nearest operation we have; kms:Sign is"
        f" ${rows['refresh']['lines']['KMS']:.2f} of it).",
        "",
        "## The first limits as traffic grows",
        "",
        "| path | limit | at |",
        "|---|---|---|",
        f"| every API route | the template's API throttle, `ThrottlingRateLimit` | {facts['throttle_rate']} requests/s per route (raise it in the template) |",
        f"| login + refresh | kms:Sign quota for ECC keys, per account and region | {signs_per_second} tokens/s"
        f" ({signs_per_second * 86400 / 1e6:.0f} million a day); one kms:Sign per token |",
        f"| authorizer | Lambda concurrency (default {LAMBDA_CONCURRENCY} per account and region) | about"
        f" {lambda_rps / 1e6:.1f} million uncached calls/s at 1 ms each, shared with every function |",
        f"| authorizer polls | one partition of the Revocations hour bucket: {PARTITION_READS_PER_SECOND} reads/s |"
        f" {instances_by_partition:,.0f} warm instances polling every {facts['poll_secs']} s"
        f" ({poll_reads:g} read unit per poll) |",
        f"| per-source limit | one Limits item per source and window: {PARTITION_WRITES_PER_SECOND} writes/s |"
        f" {PARTITION_WRITES_PER_SECOND} requests/s from one address; beyond it the item throttles and the limit"
        " admits that address (fail open); the route throttle keeps one address below it |",
        f"| revocations | the same partition: {PARTITION_WRITES_PER_SECOND} writes/s | {PARTITION_WRITES_PER_SECOND}"
        " denylist entries/s (a revoke-all writes one per session plus one for the user) |",
        "",
        f"The first to bind is the API throttle the template sets ({facts['throttle_rate']} requests/s per route);",
        f"past it, kms:Sign at {signs_per_second} logins and refreshes per second.",
        "",
    ]
    out.write_text("\n".join(lines))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
