#!/usr/bin/env python3
"""Cold start of a function binary: process start -> first answered invocation.

    coldstart.py [--valid-token] [--empty-dynamodb] BINARY EVENT_FILE [RUNS]
    coldstart.py --make-envelope-keys

The second form makes a Keys table of its own whose current key is an envelope key (as a
deployment with SIGNING_KEY_KIND=envelope makes it: `authctl keys rotate`) and prints its
name, for measuring login and refresh with their first `kms:Decrypt` in their start
(KEYS_TABLE=<it> coldstart.py ...).

Each run hands the binary one event on the project's one Lambda Runtime API stub (the
tests' `tests/src/runtime.rs`, as the `runtime-stub` binary: `cargo build -p
tokenauth-tests --bin runtime-stub`), which times the moment its answer (or error)
arrives. The binary gets a Lambda-like environment: the function's configuration from the
caller (the stack's variables, for its start-up calls) and the runtime's variables,
AWS_LAMBDA_RUNTIME_API among them; nothing else.
With --empty-dynamodb the stub also stands in for DynamoDB and answers at once (the key
set as stored, an empty denylist), which takes DynamoDB Local's own latency out of the
figure.
With --valid-token the event's placeholder token is replaced by a valid access token
signed by the stack's KMS key, so the first answer is an allow (printed once per distinct
answer), which a function can only give once it has its keys and revocation state.
Prints each run and the median, in milliseconds.
"""

import base64
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STUB = ROOT / "target" / "debug" / "runtime-stub"
PLACEHOLDER = (
    "Bearer eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6Im5vbmUifQ.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_access_token() -> str:
    """An access token as login issues it, signed by the stack's KMS key (the emulator), so
    the first answer is an allow that needed the keys and the revocation state."""
    import boto3
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    kms = boto3.client("kms", endpoint_url=os.environ["AWS_ENDPOINT_URL_KMS"])
    current = next(e["M"] for e in key_set_item()["entries"]["L"] if e["M"]["state"]["S"] == "current")
    key_id, kid = current["kms_key_id"]["S"], current["kid"]["S"]
    now = int(time.time())
    header = {"alg": "ES256", "typ": "at+jwt", "kid": kid}
    claims = {"iss": os.environ["TOKEN_ISSUER"], "sub": "coldstart-user", "aud": os.environ["TOKEN_AUDIENCE"],
              "exp": now + 900, "iat": now, "jti": uuid.uuid4().hex, "client_id": "first-party",
              "scope": "read", "sid": uuid.uuid4().hex}
    signing_input = ".".join(b64url(json.dumps(p, separators=(",", ":")).encode()) for p in (header, claims))
    der = kms.sign(KeyId=key_id, Message=hashlib.sha256(signing_input.encode()).digest(),
                   MessageType="DIGEST", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def key_set_item() -> dict:
    """The Keys table's one item, in DynamoDB's JSON, as the stack's first rotation wrote it."""
    import boto3

    ddb = boto3.client("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL_DYNAMODB"])
    item = ddb.get_item(TableName=os.environ["KEYS_TABLE"], Key={"id": {"S": "signing"}}, ConsistentRead=True)["Item"]
    return wire_json(item)


def wire_json(value):
    """boto3's answer back in DynamoDB's wire JSON: binary values (the key set's signature) as base64."""
    if isinstance(value, dict):
        return {k: base64.b64encode(v).decode() if k == "B" and isinstance(v, bytes) else wire_json(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [wire_json(v) for v in value]
    return value


# The function's own configuration (the stack's variables and the settings the functions
# read); everything else of the caller's shell stays out, as in Lambda.
FUNCTION_VARIABLE = re.compile(
    r"AWS_(REGION|DEFAULT_REGION|ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN|EC2_METADATA_DISABLED"
    r"|ENDPOINT_URL_[A-Z_]+)|[A-Z_]+_TABLE|[A-Z_]+_SECS|KEY_[A-Z_]+|TOKEN_[A-Z_]+"
    r"|AUTHORIZER_[A-Z_]+|LOGIN_[A-Z_]+|REUSE_REVOKES|CLIENT_ID|RUST_LOG"
)


def function_environment() -> dict:
    """What Lambda hands a function: its runtime's variables and the function's configuration.
    The caller's shell is left out: a developer machine's AWS_CA_BUNDLE or SSL_CERT_FILE, for
    one, would make the SDK read a trust store that Lambda does not configure."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "en_US.UTF-8", "TZ": ":UTC"}
    env.update({k: v for k, v in os.environ.items() if FUNCTION_VARIABLE.fullmatch(k)})
    return env


def run_once(binary: str, event_file: str, dynamodb_item_file: str | None) -> tuple[float, str]:
    """One cold start on the stub: (milliseconds to the first answer, the answer)."""
    argv = [str(STUB), "--name", "coldstart"]
    if dynamodb_item_file:
        argv += ["--dynamodb-item", dynamodb_item_file]
    argv += [binary, event_file]
    # The stub hands its own environment to the function: only the function's.
    out = subprocess.run(argv, env=function_environment(), capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"runtime-stub failed (the function never answered?):\n{out.stderr}")
    result = json.loads(out.stdout)
    return result["first_answer_ms"], json.dumps(result["answers"][0], separators=(",", ":"))


def make_envelope_keys() -> str:
    """A Keys table of the stack's definition with an envelope key current; its name."""
    import boto3

    sys.path.insert(0, str(ROOT / "infra" / "local"))
    import stack as stacklib

    template = stacklib.load_template()
    logical = stacklib.table_env(template)["KEYS_TABLE"]
    name = f"coldstart-envelope-{uuid.uuid4().hex[:8]}"
    ddb = boto3.client("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL_DYNAMODB"])
    ddb.create_table(**stacklib.create_table_args(logical, template["Resources"][logical]["Properties"], name))
    env = {**os.environ, "KEYS_TABLE": name, "SIGNING_KEY_KIND": "envelope", "KEY_SET_TAG": name}
    out = subprocess.run(["cargo", "run", "--quiet", "--locked", "--bin", "authctl", "--", "keys", "rotate"],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0 or "envelope" not in subprocess.run(
            ["cargo", "run", "--quiet", "--locked", "--bin", "authctl", "--", "keys", "list"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=False).stdout:
        raise SystemExit(f"no envelope key in {name}:\n{out.stderr}")
    return name


def main() -> None:
    if sys.argv[1:] == ["--make-envelope-keys"]:
        print(make_envelope_keys())
        return
    flags = {a for a in sys.argv[1:] if a.startswith("--")}
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    binary, event_file = args[0], args[1]
    runs = int(args[2]) if len(args) > 2 else 10
    if not STUB.exists():
        raise SystemExit(f"{STUB} is not built (cargo build -p tokenauth-tests --bin runtime-stub)")
    event = open(event_file, "rb").read()
    if "--valid-token" in flags:
        event = event.replace(PLACEHOLDER.encode(), f"Bearer {mint_access_token()}".encode())
    with tempfile.TemporaryDirectory(prefix="coldstart-") as tmp:
        event_path = Path(tmp) / "event.json"
        event_path.write_bytes(event)
        item_path = None
        if "--empty-dynamodb" in flags:
            item_path = Path(tmp) / "key-set-item.json"
            item_path.write_text(json.dumps(key_set_item()))
        results = [run_once(binary, str(event_path), item_path and str(item_path)) for _ in range(runs)]
    times = [t for t, _ in results]
    answers = {a for _, a in results}
    print("answer:", " | ".join(a[:300] for a in answers))
    print("runs (ms):", " ".join(f"{t:.1f}" for t in times))
    print(f"median process start -> first answered invocation: {statistics.median(times):.1f} ms")


if __name__ == "__main__":
    main()
