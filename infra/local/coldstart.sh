#!/usr/bin/env bash
# coldstart.sh: cold start of the release authorizer, process start -> first answered
# invocation, against the Runtime API stub of coldstart.py. Run inside with-stack.sh (the
# stack's variables set). The authorizer gets a valid access token signed by the stack's
# key, so its first answer is an allow that needed the keys and the revocation state.
# Four measurements:
#   1. keys preloaded: TRUSTED_JWKS handed over (no KMS call); start-up = the initial
#      revocation load from DynamoDB Local;
#   2. the same, with the stub answering that load at once (DynamoDB Local's latency out);
#   3. keys from KMS: GetPublicKey to the emulator, then the revocation load;
#   4. whoami: the same runtime with no start-up call at all (the floor of this set-up).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.local/venv/bin/python
RUNS=${COLDSTART_RUNS:-20}
EVENT=events/authorizer-http-api-v2.json

TRUSTED_JWKS=$(cargo run --quiet --locked --bin authctl -- keys jwks)
echo "== authorizer, keys preloaded (TRUSTED_JWKS)"
TRUSTED_JWKS=$TRUSTED_JWKS "$PY" infra/local/coldstart.py --valid-token target/lambda/authorizer/bootstrap "$EVENT" "$RUNS"
echo "== authorizer, keys preloaded, the initial revocation load answered by the stub at once"
TRUSTED_JWKS=$TRUSTED_JWKS "$PY" infra/local/coldstart.py --valid-token --empty-dynamodb target/lambda/authorizer/bootstrap "$EVENT" "$RUNS"
echo "== authorizer, keys from KMS (GetPublicKey at start)"
"$PY" infra/local/coldstart.py --valid-token target/lambda/authorizer/bootstrap "$EVENT" "$RUNS"
echo "== whoami (no start-up calls)"
"$PY" infra/local/coldstart.py target/lambda/whoami/bootstrap events/login-http-api.json "$RUNS"
