#!/usr/bin/env bash
# coldstart.sh: cold start of the release authorizer, process start -> first answered
# invocation, on the tests' Lambda Runtime API stub (tests/src/runtime.rs, the runtime-stub
# binary; coldstart.py drives it). Run inside with-stack.sh (the
# stack's variables set). The authorizer gets a valid access token signed by the stack's
# key, so its first answer is an allow that needed the keys and the revocation state.
# Three measurements:
#   1. the key set (one GetItem) and the initial revocation load, from DynamoDB Local, at once;
#   2. the same, with the stub answering those reads at once (DynamoDB Local's latency out);
#   3. whoami: the same runtime with no start-up call at all (the floor of this set-up).
# Then login and refresh, each answering a malformed request (400, nothing to do but start),
# with a KMS key current (their start reads the key set; refresh also opens the sealing
# secret, one kms:Decrypt) and with an envelope key current (a Keys table of its own: the
# signer's first kms:Decrypt of the private half is in the start too).
# The key set holds the public keys and its signature, which the authorizer checks offline
# with the public key pinned in KEY_SET_VERIFY_KEY: it makes no KMS call at all.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.local/venv/bin/python
RUNS=${COLDSTART_RUNS:-20}
EVENT=events/authorizer-http-api-v2.json

echo "== authorizer: key set and revocations from DynamoDB Local"
"$PY" infra/local/coldstart.py --valid-token target/lambda/authorizer/bootstrap "$EVENT" "$RUNS"
echo "== authorizer: key set and revocations answered by the stub at once"
"$PY" infra/local/coldstart.py --valid-token --empty-dynamodb target/lambda/authorizer/bootstrap "$EVENT" "$RUNS"
echo "== whoami (no start-up calls)"
"$PY" infra/local/coldstart.py target/lambda/whoami/bootstrap events/login-http-api.json "$RUNS"
ENVELOPE_KEYS=$("$PY" infra/local/coldstart.py --make-envelope-keys)
for fn in login refresh; do
  case $fn in
    login) EV=events/login-http-api-malformed.json ;;
    refresh) EV=events/refresh-wrong-grant-type.json ;;
  esac
  echo "== $fn: a KMS key current"
  "$PY" infra/local/coldstart.py "target/lambda/$fn/bootstrap" "$EV" "$RUNS"
  echo "== $fn: an envelope key current (its kms:Decrypt in the start)"
  KEYS_TABLE=$ENVELOPE_KEYS "$PY" infra/local/coldstart.py "target/lambda/$fn/bootstrap" "$EV" "$RUNS"
done
