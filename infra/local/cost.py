#!/usr/bin/env python3
"""cost.py [OUT]: the cost and scale model, docs/cost.md, from figures measured here, for
each kind of signing key (kms: a kms:Sign per token; envelope: the key decrypted once per
instance, tokens signed locally).

Measured (the script refuses to run without them):
  .local/cost/measured.json            tests/tests/cost.rs, per kind of key: per request its
                                       AWS calls, round trips, DynamoDB capacity (DynamoDB
                                       Local's accounting, in all and by table) and KMS
                                       requests; what an instance of login and of refresh
                                       calls once, at its start
  target/criterion/login/argon2id_verify              argon2id verification on this machine
  target/criterion/signing/es256_envelope_sign_local  one local ES256 signature (envelope)
  target/criterion/authorizer/handler_http_api_v2_ES256  the authorizer's handler (a repeated bearer token)
  target/criterion/authorizer/dpop_cached_token_ES256    the handler on a DPoP request (token cached, new proof)
  target/criterion/authorizer/raw_verify_ES256           one ES256 access-token check (a token exchange's subject)
  target/criterion/{login,refresh}/..._local_stack_<kind>  latency against the local stack
  infra/template.yaml                  each function's memory, the API throttle, the poll

Typed, and named as such in the output: AWS list prices (us-east-1), quotas, the in-region
round trip times DESIGN.md gives, Lambda's CPU share per MB, how many requests an instance
serves per start, and the usage profile of a monthly active user for the Cognito comparison.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import stack  # noqa: E402

KINDS = ("kms", "envelope")
# --- typed: AWS list prices, us-east-1, as read on the pricing pages (November 2026) -----
PRICES = {
    "lambda_request": 0.20 / 1e6,
    "lambda_gb_second_x86_64": 0.0000166667,
    "lambda_gb_second_arm64": 0.0000133334,
    "http_api_request": 1.00 / 1e6,
    "dynamodb_wru": 0.625 / 1e6,
    "dynamodb_rru": 0.125 / 1e6,
    # kms:Sign with an ECC key; every other call we make (Decrypt, GenerateDataKey, ...) is a
    # symmetric request.
    "kms_asymmetric_request": 0.15 / 1e4,
    "kms_symmetric_request": 0.03 / 1e4,
    "cloudwatch_logs_gb": 0.50,
    # Amazon Cognito user pools: per MAU above the free tier, and per M2M token request.
    "cognito_lite_mau": 0.0055,
    "cognito_essentials_mau": 0.015,
    # M2M (client credentials): $2.25 per 1,000 token requests (the first tier) and $6 per
    # app client and month, as the pricing page and the billing code CUPM2MTokenRequests read.
    "cognito_m2m_token_request": 2.25 / 1e3,
    "cognito_m2m_app_client_month": 6.0,
}
KMS_ASYMMETRIC_OPERATIONS = {"Sign", "GetPublicKey", "Verify"}
# --- typed: facts DESIGN.md gives, and quotas as the AWS docs state their defaults --------
DYNAMODB_ROUND_TRIP_MS = 5.0  # "single-digit milliseconds inside AWS"
KMS_ROUND_TRIP_MS = 13.0  # "~13 ms reported" for kms:Sign; taken for every KMS call
FULL_CORE_MB = 1769  # "one full vCPU at 1,769 MB"
KMS_ECC_SIGN_PER_SECOND = 1000  # the account-and-region quota DESIGN.md quotes
KMS_SYMMETRIC_PER_SECOND = 10_000  # "Cryptographic operations (symmetric)": the lowest regional default
PARTITION_WRITES_PER_SECOND, PARTITION_READS_PER_SECOND = 1000, 3000
TABLE_WRITES_PER_SECOND = 40_000  # on-demand table throughput quota (default, per table)
NEW_TABLE_WRITES_PER_SECOND = 4_000  # what a new on-demand table serves before it has seen more
LAMBDA_SCALE_PER_10_SECONDS = 1000  # instances a function may add every 10 s
# A conditional write whose condition fails is billed as a write (DynamoDB developer guide,
# condition expressions); DynamoDB Local answers the refusal without ConsumedCapacity.
REFUSED_CONDITIONAL_WRITE_UNITS = 1.0
THROTTLED_LOG_BYTES = 250  # one EMF line (SourceThrottled), no audit line
LOG_BYTES_PER_EVENT = 550  # an audit line and an EMF line per login or refresh (sizes seen in tests/tests/emf.rs)
LAMBDA_CONCURRENCY = 1000  # the default account quota
HANDLER_MS = 1.0  # the handler's own work besides argon2id and signing (parsing, SDK calls)
# --- typed: how long an instance lives, in requests -----------------------------------------
# What an instance calls once (the key set, the envelope key's decrypt, the sealing
# secret) is spread over the requests it serves. Lambda keeps a busy instance for hours; a
# quiet deployment starts one for a handful of requests. 1,000 is the assumption the totals
# use; the worst case (every request a cold start) is printed beside it.
REQUESTS_PER_INSTANCE_START = 1000
# --- typed: a monthly active user, for the comparison with Cognito ------------------------
PROFILE = {"logins": 4, "refreshes": 240, "api_calls": 2000, "authorizer_cache_hit": 0.5}
# The share of API calls answered from API Gateway's authorizer cache is the typed 0.5 only
# where the template caches answers at all: with ReauthorizeEvery 0 (DPoP: a proof is good
# for one request) every API call is an authorizer invocation, and template_facts says so.
CACHED_AUTHORIZER_HIT = PROFILE["authorizer_cache_hit"]
# A DPoP request's proof is recorded by one conditional PutItem of a small item (< 1 KB).
DPOP_PROOF_WRITE_UNITS = 1.0
# --- typed: the refresh storm of issue 19 (a million clients refreshing within a minute) ---
STORM_REFRESHES, STORM_SECONDS = 1_000_000, 60


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
    authorizers = t["Resources"]["HttpApi"]["Properties"]["Auth"]["Authorizers"]
    cache_secs = max(int(a.get("Identity", {}).get("ReauthorizeEvery", 0)) for a in authorizers.values())
    return {"memory": memory, "throttle_rate": route["ThrottlingRateLimit"], "poll_secs": poll, "arch": arch,
            "authorizer_cache_secs": cache_secs}


def cpu_ms(full_core_ms: float, memory_mb: int) -> float:
    return full_core_ms * max(1.0, FULL_CORE_MB / memory_mb)


def kms_calls(request: dict) -> list[str]:
    return [c.split(".", 1)[1] for c in request["calls"] if c.startswith("KMS.")]


def network_ms(request: dict) -> float:
    """Waiting on AWS: a DynamoDB round trip per round trip, a KMS round trip for those that
    hold a KMS call (at most one per round trip)."""
    trips = request["round_trips"]
    kms_trips = min(len(kms_calls(request)), trips)
    return trips * DYNAMODB_ROUND_TRIP_MS + kms_trips * (KMS_ROUND_TRIP_MS - DYNAMODB_ROUND_TRIP_MS)


def kms_price(request: dict) -> float:
    return sum(PRICES["kms_asymmetric_request"] if op in KMS_ASYMMETRIC_OPERATIONS else PRICES["kms_symmetric_request"]
               for op in kms_calls(request))


def dynamodb_price(request: dict) -> float:
    return request["write_units"] * PRICES["dynamodb_wru"] + request["read_units"] * PRICES["dynamodb_rru"]


def lambda_ms_price(billed_ms: float, memory_mb: int, arch: str) -> float:
    return billed_ms / 1000 * memory_mb / 1024 * PRICES[f"lambda_gb_second_{arch}"]


def instance_start(start: dict, first: dict, steady: dict, memory_mb: int, arch: str) -> dict:
    """What an instance's start costs once: its calls, and the time it waits for them
    (billed: Lambda bills INIT), and what its first request calls beyond a later one's."""
    wait_ms = math.ceil(network_ms(start))
    first_extra = max(0.0, dynamodb_price(first) + kms_price(first) - dynamodb_price(steady) - kms_price(steady))
    price = dynamodb_price(start) + kms_price(start) + lambda_ms_price(wait_ms, memory_mb, arch) + first_extra
    return {"calls": start["calls"], "wait_ms": wait_ms, "price": price}


def per_million(request: dict, duration_ms: float, memory_mb: int, arch: str, log_bytes: int,
                start: dict | None = None) -> dict:
    billed_ms = max(1, math.ceil(duration_ms))
    lines = {
        "Lambda requests": PRICES["lambda_request"],
        "Lambda duration": lambda_ms_price(billed_ms, memory_mb, arch),
        "API Gateway": PRICES["http_api_request"],
        "DynamoDB": dynamodb_price(request),
        "KMS": kms_price(request),
        "CloudWatch Logs": log_bytes / 1e9 * PRICES["cloudwatch_logs_gb"],
        "instance start": start["price"] / REQUESTS_PER_INSTANCE_START if start else 0.0,
    }
    return {"billed_ms": billed_ms, "lines": {k: v * 1e6 for k, v in lines.items()}}


def total(row: dict) -> float:
    return sum(row["lines"].values())


def heaviest_table(request: dict) -> tuple[str, float]:
    """The table a request writes most to, and its write units there."""
    tables = [(name, units["write_units"]) for name, units in request.get("by_table", {}).items()]
    return max(tables, key=lambda t: t[1], default=("-", 0.0))


def model(kind: str, m: dict, facts: dict, bench: dict) -> dict:
    arch, mem = facts["arch"], facts["memory"]
    # The CPU a signature takes in the function: local ECDSA for an envelope key; for a
    # KMS-held key the signature is made in KMS (the SDK call is in HANDLER_MS).
    sign_ms = bench["envelope_sign_ms"] if kind == "envelope" else 0.0
    login_start = instance_start(m["login_start"], m["login_first"], m["login"], mem["LoginFunction"], arch)
    refresh_start = instance_start(m["refresh_start"], m["refresh_first"], m["refresh"], mem["RefreshFunction"], arch)
    login_ms = cpu_ms(bench["argon2_ms"] + sign_ms, mem["LoginFunction"]) + network_ms(m["login"]) + HANDLER_MS
    refresh_ms = cpu_ms(sign_ms, mem["RefreshFunction"]) + network_ms(m["refresh"]) + HANDLER_MS
    authorizer_ms = cpu_ms(bench["handler_ms"], mem["AuthorizerFunction"])
    # DPoP: the token from the instance's cache, the proof's signature checked, then one
    # conditional write that the request waits for.
    dpop_request = dict(m["authorizer_request"])
    dpop_request["write_units"] = dpop_request["write_units"] + DPOP_PROOF_WRITE_UNITS
    dpop_request["round_trips"] = dpop_request["round_trips"] + 1
    dpop_request["calls"] = list(dpop_request["calls"]) + ["DynamoDB.PutItem"]
    dpop_ms = cpu_ms(bench["dpop_handler_ms"], mem["AuthorizerFunction"]) + network_ms(dpop_request)
    throttled = dict(m["login_throttled"])
    throttled["write_units"] = max(throttled["write_units"], REFUSED_CONDITIONAL_WRITE_UNITS)
    throttled_ms = network_ms(throttled) + HANDLER_MS
    # The other grants of the token endpoint (the refresh function): a service's own token,
    # and a user's token exchanged by a service (its subject token checked once more).
    cc_ms = cpu_ms(sign_ms, mem["RefreshFunction"]) + network_ms(m["client_credentials"]) + HANDLER_MS
    exchange_ms = (cpu_ms(sign_ms + bench["verify_ms"], mem["RefreshFunction"]) + network_ms(m["token_exchange"])
                   + HANDLER_MS)
    rows = {
        "login": per_million(m["login"], login_ms, mem["LoginFunction"], arch, LOG_BYTES_PER_EVENT, login_start),
        "login refused by the per-source limit": per_million(throttled, throttled_ms, mem["LoginFunction"], arch,
                                                             THROTTLED_LOG_BYTES),
        "refresh": per_million(m["refresh"], refresh_ms, mem["RefreshFunction"], arch, LOG_BYTES_PER_EVENT,
                               refresh_start),
        "authorizer call": per_million(m["authorizer_request"], authorizer_ms, mem["AuthorizerFunction"], arch, 0),
        "authorizer call (DPoP)": per_million(dpop_request, dpop_ms, mem["AuthorizerFunction"], arch, 0),
        "client credentials": per_million(m["client_credentials"], cc_ms, mem["RefreshFunction"], arch,
                                          LOG_BYTES_PER_EVENT, refresh_start),
        "token exchange": per_million(m["token_exchange"], exchange_ms, mem["RefreshFunction"], arch,
                                      LOG_BYTES_PER_EVENT, refresh_start),
    }
    # An authorizer call is not an API request of its own (API Gateway bills the request it
    # authorises); the protected API request is billed once, below, per API call.
    rows["authorizer call"]["lines"]["API Gateway"] = 0.0
    rows["authorizer call (DPoP)"]["lines"]["API Gateway"] = 0.0
    per_mau = (
        PROFILE["logins"] * total(rows["login"])
        + PROFILE["refreshes"] * total(rows["refresh"])
        + PROFILE["api_calls"] * (1 - PROFILE["authorizer_cache_hit"]) * total(rows["authorizer call"])
    ) / 1e6
    # Limits of the token paths (login and refresh), each as tokens per second.
    signing = KMS_ECC_SIGN_PER_SECOND if kms_calls(m["refresh"]) else None
    concurrency = {name: LAMBDA_CONCURRENCY * 1000.0 / rows[name]["billed_ms"] for name in ("login", "refresh")}
    table, units = heaviest_table(m["refresh"])
    by_table = TABLE_WRITES_PER_SECOND / units if units else math.inf
    new_table = NEW_TABLE_WRITES_PER_SECOND / units if units else math.inf
    return {
        "rows": rows, "per_mau": per_mau, "login_start": login_start, "refresh_start": refresh_start,
        "authorizer_ms": authorizer_ms, "dpop_ms": dpop_ms, "signing_limit": signing, "concurrency": concurrency,
        "refresh_table": (table, units, by_table, new_table),
        "refresh_rate": min(x for x in (signing, concurrency["refresh"], by_table) if x),
    }


def money(x: float) -> str:
    return f"${x:.2f}"


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "cost.md"
    measured_path = ROOT / ".local" / "cost" / "measured.json"
    if not measured_path.exists():
        raise SystemExit(f"{measured_path} is missing: run the tests first (make cost does)")
    measured = json.loads(measured_path.read_text())
    if "kinds" not in measured or set(measured["kinds"]) != set(KINDS):
        raise SystemExit(f"{measured_path} does not hold both kinds of key: run `make cost`")
    facts = template_facts()
    PROFILE["authorizer_cache_hit"] = CACHED_AUTHORIZER_HIT if facts["authorizer_cache_secs"] > 0 else 0.0
    arch, mem = facts["arch"], facts["memory"]
    bench = {
        "argon2_ms": criterion_median_ms("login", "argon2id_verify"),
        "handler_ms": criterion_median_ms("authorizer", "handler_http_api_v2_ES256"),
        "dpop_handler_ms": criterion_median_ms("authorizer", "dpop_cached_token_ES256"),
        "envelope_sign_ms": criterion_median_ms("signing", "es256_envelope_sign_local"),
        "verify_ms": criterion_median_ms("authorizer", "raw_verify_ES256"),
        "kms_sign_ms": criterion_median_ms("signing", "es256_kms_sign_emulator"),
    }
    latency = {kind: {"login": criterion_median_ms("login", f"login_end_to_end_local_stack_{kind}"),
                      "refresh": criterion_median_ms("refresh", f"refresh_end_to_end_local_stack_{kind}")}
               for kind in KINDS}
    models = {kind: model(kind, measured["kinds"][kind], facts, bench) for kind in KINDS}
    kms, env = models["kms"], models["envelope"]
    lite = PRICES["cognito_lite_mau"]

    lines = [
        "# Cost and scale",
        "",
        "Generated by `infra/local/cost.py` (`make cost`); do not edit by hand. Measured inputs:",
        f"`.local/cost/measured.json` from `tests/tests/cost.rs` (measured {measured['measured_at']}, Unix seconds), the",
        "criterion medians of `make bench`, and `infra/template.yaml`. Prices, quotas and round-trip times",
        "are typed in the script, named below, and must be checked before a decision.",
        "",
        "Every figure is computed for both kinds of signing key (`SIGNING_KEY_KIND`): `kms`, whose",
        "private key never leaves KMS (a kms:Sign per token), and `envelope`, an ES256 key pair whose",
        "private half a signer decrypts once (kms:Decrypt) and then signs with locally (docs/keys.md).",
        "",
        "In short, per million tokens (all-in: Lambda, API Gateway, DynamoDB, KMS, logs, and each",
        "instance's start spread over its requests):",
        "",
        "| per million | kms | envelope | kms / envelope |",
        "|---|---|---|---|",
    ]
    for name in ("login", "refresh", "authorizer call", "authorizer call (DPoP)", "client credentials",
                 "token exchange"):
        a, b = total(kms["rows"][name]), total(env["rows"][name])
        lines.append(f"| {name} | {money(a)} | {money(b)} | {a / b:.2f} |")
    lines.append(f"| a monthly active user (below) | ${kms['per_mau']:.5f} | ${env['per_mau']:.5f} |"
                 f" {kms['per_mau'] / env['per_mau']:.2f} |")
    refresh_env = total(env["rows"]["refresh"])
    lines += [
        "",
        f"Envelope keys take kms:Sign ({money(kms['rows']['refresh']['lines']['KMS'])} of a million refreshes) out of every"
        f" token: a refresh costs {money(refresh_env)} per million (goal: at most $5.00, "
        f"{'met' if refresh_env <= 5.0 else 'missed'}) and a monthly active user ${env['per_mau']:.5f},"
        f" {env['per_mau'] / lite:.3f} of Cognito Lite's ${lite} (goal: at most a quarter,"
        f" {'met' if env['per_mau'] <= lite / 4 else 'missed'}); with KMS-held keys a user costs"
        f" {kms['per_mau'] / lite:.3f} of it. What envelope keys cost instead is exposure: a private key in a",
        "signer's memory for a day (docs/keys.md).",
        "",
        "## What one request consumes (measured)",
        "",
        "| request | key | AWS calls | round trips | DynamoDB read / write units | KMS requests |",
        "|---|---|---|---|---|---|",
    ]
    for name in ["login", "login_failed", "login_throttled", "refresh", "client_credentials", "token_exchange",
                 "authorizer_request", "authorizer_poll", "login_start", "login_first", "refresh_start",
                 "refresh_first"]:
        for kind in KINDS:
            r = measured["kinds"][kind][name]
            label = name.replace("_", " ").replace(" start", ": instance start").replace(" first", ": first request of an instance")
            lines.append(f"| {label} | {kind} | {', '.join(r['calls']) or 'none'} | {r['round_trips']} | "
                         f"{r['read_units']:g} / {r['write_units']:g} | {r['kms_requests']} |")
    refresh_by_table = ", ".join(f"`{t}` {u['write_units']:g}"
                                 for t, u in measured["kinds"]["envelope"]["refresh"]["by_table"].items()
                                 if u["write_units"])
    lines += [
        "",
        "Capacity is DynamoDB Local's accounting of each call (`ReturnConsumedCapacity`); it",
        "reports one total per call and table, so a transaction's condition checks are counted as write",
        "units, the dearer kind. Login and refresh begin with the per-source limit's conditional",
        "UpdateItem (1 write unit). A login the limit refuses (`login throttled`) is that one call;",
        "DynamoDB Local answers the refused write without its capacity, but DynamoDB bills a failed",
        f"condition as a write, so the model counts {REFUSED_CONDITIONAL_WRITE_UNITS:g} write unit for it."
        f" A refresh's write units by table: {refresh_by_table}.",
        "",
        "An instance start is what login's and refresh's `from_config` call once: the key set (its signature checked offline)",
        "(both kinds), the envelope key's decrypt (envelope), the sealing secret (refresh). The start's read",
        "spends the key set's reload interval, so an instance's first request reads it no more; whatever it",
        "calls beyond a later request is counted with the start. With an envelope key current, login and",
        "refresh make no KMS call after the start (the rows above them: steady state).",
        "",
        "## Duration and price per million",
        "",
        f"CPU measured on this machine, scaled to each function's memory ({FULL_CORE_MB} MB = one vCPU):",
        f"argon2id {bench['argon2_ms']:.1f} ms on a full core, {cpu_ms(bench['argon2_ms'], mem['LoginFunction']):.1f} ms at"
        f" {mem['LoginFunction']} MB; one local ES256 signature (envelope) {bench['envelope_sign_ms'] * 1000:.0f} µs,"
        f" {cpu_ms(bench['envelope_sign_ms'], mem['RefreshFunction']) * 1000:.0f} µs at {mem['RefreshFunction']} MB"
        f" (refresh); the authorizer's handler {bench['handler_ms'] * 1000:.0f} µs,"
        f" {kms['authorizer_ms'] * 1000:.0f} µs at {mem['AuthorizerFunction']} MB. Typed: {HANDLER_MS:g} ms of other"
        " handler work per login or refresh.",
        f"Network, typed from DESIGN.md: {DYNAMODB_ROUND_TRIP_MS:g} ms per DynamoDB round trip, {KMS_ROUND_TRIP_MS:g} ms"
        f" per KMS call. Architecture: {arch} (the template's default). Billed in 1 ms steps.",
        "",
        f"Instance start, typed: an instance serves {REQUESTS_PER_INSTANCE_START:,} requests per start; its start"
        " (calls, and the time it waits for them, billed as INIT) is spread over them:",
        "",
        "| instance start | key | calls | waits | once | per million requests (typed) | if every request started an instance |",
        "|---|---|---|---|---|---|---|",
    ]
    for function in ("login", "refresh"):
        for kind in KINDS:
            s = models[kind][f"{function}_start"]
            lines.append(f"| {function} | {kind} | {', '.join(s['calls'])} | {s['wait_ms']} ms | ${s['price']:.7f} |"
                         f" {money(s['price'] * 1e6 / REQUESTS_PER_INSTANCE_START)} | {money(s['price'] * 1e6)} |")
    reload_reads = measured["kinds"]["envelope"]["login_start"]["by_table"].get("KEYS_TABLE", {}).get("read_units", 0)
    reload_hourly = 3600 / measured["key_reload_secs"] * reload_reads * PRICES["dynamodb_rru"]
    decrypt = PRICES["kms_symmetric_request"] + lambda_ms_price(KMS_ROUND_TRIP_MS, mem["RefreshFunction"], arch)
    lines += [
        "",
        f"A living instance also re-reads the key set every {measured['key_reload_secs']} s (`KEY_SET_RELOAD_SECS`,"
        f" {reload_reads:g} read unit: ${reload_hourly:.6f} an hour, both kinds) and, with envelope keys, decrypts",
        f"each new key once (`ENVELOPE_KEY_MAX_AGE_SECS` = {measured['envelope_key_max_age_secs']} s: daily),"
        f" about ${decrypt:.7f} per instance and key. KMS keys' monthly fee ($1 each: the envelope, key-set signing and",
        "sealing keys, and in kms mode each signing key) is not per request and not counted here.",
        "",
    ]

    for kind in KINDS:
        rows = models[kind]["rows"]
        lines += [
            f"### Per million, {kind} key",
            "",
            "| per million | billed ms | Lambda requests | Lambda duration | API Gateway | DynamoDB | KMS | Logs |"
            " instance start | **total** |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, row in rows.items():
            l = row["lines"]
            lines.append(
                f"| {name} | {row['billed_ms']} | {money(l['Lambda requests'])} | {money(l['Lambda duration'])} | "
                f"{money(l['API Gateway'])} | {money(l['DynamoDB'])} | {money(l['KMS'])} | "
                f"{money(l['CloudWatch Logs'])} | {money(l['instance start'])} | **{money(total(row))}** |")
        lines.append("")
    flood = total(env["rows"]["login refused by the per-source limit"])
    lines += [
        f"A flood from one address: past its limit each login costs {money(flood)} per million (one write,"
        f" {env['rows']['login refused by the per-source limit']['billed_ms']} ms billed, no argon2, no signature) against"
        f" {money(total(kms['rows']['login']))} (kms) or {money(total(env['rows']['login']))} (envelope) for a login that"
        " reaches the password check.",
        "",
        "The protected API request itself (API Gateway $1.00 per million, and its backend) comes",
        "on top of an authorizer call, whether the answer was cached or not.",
        "",
        f"API Gateway's cache of authorizer answers is {'on' if facts['authorizer_cache_secs'] else 'off'} in the template"
        f" (ReauthorizeEvery {facts['authorizer_cache_secs']} s): a DPoP proof is good for one request, so every API call"
        f" is an authorizer invocation, {money(total(env['rows']['authorizer call']))} per million for a bearer token (the"
        " instance's cache of verified tokens keeps it within the first billed millisecond). A DPoP call adds the"
        f" proof's conditional PutItem ({DPOP_PROOF_WRITE_UNITS:g} write unit) and its round trip:"
        f" {money(total(env['rows']['authorizer call (DPoP)']))} per million,"
        f" {env['rows']['authorizer call (DPoP)']['billed_ms']} ms billed"
        f" ({env['dpop_ms'] * 1000:.0f} µs, of which the handler {cpu_ms(bench['dpop_handler_ms'], mem['AuthorizerFunction']) * 1000:.0f} µs"
        f" at {mem['AuthorizerFunction']} MB).",
        "",
        "## Latency against the local stack (measured, same run)",
        "",
        "Criterion medians of `make bench` on this machine, against DynamoDB Local and the KMS emulator",
        "(whose kms:Sign is local, not the ~13 ms of KMS in AWS): an indication of what each kind adds, not",
        "AWS latency.",
        "",
        "| median | kms | envelope | kms / envelope |",
        "|---|---|---|---|",
    ]
    for name in ("login", "refresh"):
        a, b = latency["kms"][name], latency["envelope"][name]
        lines.append(f"| {name} | {a:.1f} ms | {b:.1f} ms | {a / b:.2f} |")
    lines += [
        f"| one signature | {bench['kms_sign_ms']:.2f} ms (the emulator) | {bench['envelope_sign_ms'] * 1000:.0f} µs"
        f" (local) | {bench['kms_sign_ms'] / bench['envelope_sign_ms']:.0f} |",
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

    for kind in KINDS:
        lines.append(f"| tokenauth, {kind} key (this model) | "
                     + " | ".join(fmt(models[kind]["per_mau"] * n) for n in (1e4, 1e5, 1e6)) + " |")
    for tier in ("lite", "essentials"):
        price = PRICES[f"cognito_{tier}_mau"]
        lines.append(f"| Cognito {tier.capitalize()} (${price}/MAU, free tier not counted) | "
                     + " | ".join(fmt(price * n) for n in (1e4, 1e5, 1e6)) + " |")
    lines += [
        "",
        f"Per MAU: tokenauth ${kms['per_mau']:.5f} with kms keys ({kms['per_mau'] / lite:.2f} of Cognito Lite),"
        f" ${env['per_mau']:.5f} with envelope keys ({env['per_mau'] / lite:.3f} of it); Cognito Lite ${lite},"
        f" Essentials ${PRICES['cognito_essentials_mau']}. Cognito's price covers more than tokens (hosted UI, MFA,",
        "federation); ours covers what this service does.",
        "",
        "### Service tokens and token exchange",
        "",
        f"Cognito bills machine-to-machine tokens (client credentials) at ${PRICES['cognito_m2m_token_request'] * 1e3:.2f}"
        f" per thousand token requests (the first tier: {money(PRICES['cognito_m2m_token_request'] * 1e6)} per million)"
        f" and ${PRICES['cognito_m2m_app_client_month']:.2f} per app client and month; it has no token exchange."
        " Here a client is one item in the Clients table (no monthly fee beyond DynamoDB storage) and each token is"
        " the request's own cost:",
        "",
        "| per million tokens | kms | envelope | Cognito M2M | Cognito / envelope |",
        "|---|---|---|---|---|",
    ]
    cognito_m2m = PRICES["cognito_m2m_token_request"] * 1e6
    for name in ("client credentials", "token exchange"):
        a, b = total(kms["rows"][name]), total(env["rows"][name])
        cognito = (money(cognito_m2m), f"{cognito_m2m / b:,.0f}") if name == "client credentials" else ("none", "-")
        lines.append(f"| {name} | {money(a)} | {money(b)} | {cognito[0]} | {cognito[1]} |")
    services = 20
    lines += [
        "",
        f"{services} services, each asking for a token every 15 minutes (a token cached for its lifetime):"
        f" {services * 4 * 24 * 30:,} tokens a month; Cognito"
        f" {money(services * PRICES['cognito_m2m_app_client_month'] + services * 4 * 24 * 30 * PRICES['cognito_m2m_token_request'])}"
        f" a month, here {money(services * 4 * 24 * 30 * total(env['rows']['client credentials']) / 1e6)} (envelope) or"
        f" {money(services * 4 * 24 * 30 * total(kms['rows']['client credentials']) / 1e6)} (kms).",
        "A client-credentials request is the client's read (strongly consistent) and a signature; a token exchange is the"
        " client's read, then the subject token's liveness (its jti entry, its session, every client of its chain, at"
        " once), then its account: no write, and one more signature check of the subject token on the CPU.",
        "",
        "## The first limits as traffic grows",
        "",
    ]
    table, units, by_table, new_table = env["refresh_table"]
    storm_rate = STORM_REFRESHES / STORM_SECONDS

    def drain(rate: float) -> str:
        return "served as it comes" if rate >= storm_rate else f"drained in {STORM_REFRESHES / rate / 60:.0f} minutes"

    def signing(kind: str) -> str:
        if models[kind]["signing_limit"]:
            return (f"kms:Sign quota for ECC keys, per account and region: {models[kind]['signing_limit']} tokens/s"
                    f" ({models[kind]['signing_limit'] * 86400 / 1e6:.0f} million a day), shared with all else that"
                    " signs")
        scale = 2 * LAMBDA_SCALE_PER_10_SECONDS / 10
        return (f"none per token; kms:Decrypt once per instance and key, against the symmetric quota"
                f" ({KMS_SYMMETRIC_PER_SECOND:,}/s, the lowest regional default): Lambda adds at most"
                f" {LAMBDA_SCALE_PER_10_SECONDS} instances per 10 s per function, so login and refresh scaling out at"
                f" full speed decrypt {scale:.0f} times/s")

    lines += [
        "| path | limit | kms key | envelope key |",
        "|---|---|---|---|",
        f"| every API route | the template's API throttle, `ThrottlingRateLimit` | {facts['throttle_rate']} requests/s per"
        f" route | the same (raise it in the template) |",
        f"| signing a token (login, refresh) | KMS | {signing('kms')} | {signing('envelope')} |",
        f"| login, refresh | Lambda concurrency (default {LAMBDA_CONCURRENCY} per account and region, shared with every"
        f" function) | {kms['concurrency']['login']:,.0f} logins/s or {kms['concurrency']['refresh']:,.0f}"
        f" refreshes/s at {kms['rows']['login']['billed_ms']} and {kms['rows']['refresh']['billed_ms']} ms each |"
        f" {env['concurrency']['login']:,.0f} logins/s or {env['concurrency']['refresh']:,.0f} refreshes/s at"
        f" {env['rows']['login']['billed_ms']} and {env['rows']['refresh']['billed_ms']} ms each |",
        f"| refresh | on-demand throughput of the table it writes most (`{table}`, {units:g} write unit{'s' if units != 1 else ''} a refresh):"
        f" {TABLE_WRITES_PER_SECOND:,} writes/s per table (default quota); a new table serves"
        f" {NEW_TABLE_WRITES_PER_SECOND:,}/s and then twice its previous peak at once |"
        f" {kms['refresh_table'][2]:,.0f} refreshes/s ({kms['refresh_table'][3]:,.0f}/s on a new table) |"
        f" {by_table:,.0f} refreshes/s ({new_table:,.0f}/s on a new table) |",
        f"| authorizer | Lambda concurrency | about {LAMBDA_CONCURRENCY * 1000.0 / max(1.0, kms['authorizer_ms']) / 1e6:.1f}"
        " million uncached calls/s at 1 ms each, shared with every function | the same |",
        f"| authorizer polls | one partition of the Revocations hour bucket: {PARTITION_READS_PER_SECOND} reads/s |"
        f" {PARTITION_READS_PER_SECOND * facts['poll_secs'] / (measured['kinds']['kms']['authorizer_poll']['read_units'] or 1.0):,.0f}"
        f" warm instances polling every {facts['poll_secs']} s | the same |",
        f"| per-source limit | one Limits item per source and window: {PARTITION_WRITES_PER_SECOND} writes/s |"
        f" {PARTITION_WRITES_PER_SECOND} requests/s from one address; beyond it the item throttles and the limit"
        " admits that address (fail open); the route throttle keeps one address below it | the same |",
        f"| revocations | the same partition: {PARTITION_WRITES_PER_SECOND} writes/s | {PARTITION_WRITES_PER_SECOND}"
        " denylist entries/s (a revoke-all writes one per session plus one for the user) | the same |",
        "",
        f"The first to bind is the API throttle the template sets ({facts['throttle_rate']} requests/s per route).",
        f"Past it, with kms keys: kms:Sign at {kms['refresh_rate']:,.0f} logins and refreshes per second, for the whole"
        " account. With envelope keys no KMS quota is on the token path; refreshes are bound next at"
        f" {env['refresh_rate']:,.0f}/s by "
        + ("Lambda concurrency" if env["refresh_rate"] == env["concurrency"]["refresh"] else f"the `{table}` table's throughput")
        + f" (both quotas adjustable). The refresh storm of issue 19 ({STORM_REFRESHES:,} refreshes within"
        f" {STORM_SECONDS} s, {storm_rate:,.0f}/s), once past the API throttle, is {drain(kms['refresh_rate'])} with"
        f" kms keys and {drain(env['refresh_rate'])} with envelope keys.",
        "",
    ]
    out.write_text("\n".join(lines))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
