#!/usr/bin/env bash
# with-stack.sh [--gateway] DIR COMMAND...: start a private local stack in DIR (its own
# ports, so a running `make dev` stack is left alone), run COMMAND with the stack's
# variables, and stop the stack again whatever happened.
#
# --gateway also runs every function under `cargo lambda watch` (GATEWAY_CONCURRENCY
# instances each, default 4, so concurrent requests really run concurrently) and the local
# gateway in front of them, and exports GATEWAY_URL, GATEWAY_FUNCTION_ENV (the settings the
# functions get beyond the stack's) and GATEWAY_PARAMETERS (the template parameters the
# gateway is given). Short revocation poll, authorizer cache and key gates keep the
# end-to-end tests quick; they are still the production code paths.
set -euo pipefail
cd "$(dirname "$0")/../.."

PY=.local/venv/bin/python
GATEWAY=false
if [ "${1:-}" = --gateway ]; then
  GATEWAY=true
  shift
fi
DIR=$1
shift

cleanup() { "$PY" infra/local/stack.py down --dir "$DIR" || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# The issuer is the URL of the gateway this stack may start: a free port chosen now.
"$PY" infra/local/stack.py up --dir "$DIR" --gateway-port 0
set -a
# shellcheck disable=SC1091
. "$DIR.env"
set +a
export TOKENAUTH_KMS_EMULATOR="$PWD/$PY $PWD/infra/local/kms_emulator.py"
export TOKENAUTH_TLS_PROXY="$PWD/$PY $PWD/infra/local/tls_proxy.py"
export TOKENAUTH_DYNAMODB_THROTTLE_PROXY="$PWD/$PY $PWD/infra/local/dynamodb_throttle_proxy.py"
# The KMS emulator's throttling switch (infra/local/kms_emulator.py), for the tests only:
# the functions' environment (the stack's env file) does not name it.
TOKENAUTH_KMS_FAULTS="$(cd "$DIR" && pwd)/kms-faults.json"
export TOKENAUTH_KMS_FAULTS

if $GATEWAY; then
  export GATEWAY_FUNCTION_ENV=${GATEWAY_FUNCTION_ENV:-REVOCATION_POLL_SECS=1,KEY_SET_RELOAD_SECS=1,JWKS_MAX_AGE_SECS=1,KEY_PUBLISH_LEAD_SECS=4}
  export GATEWAY_PARAMETERS=${GATEWAY_PARAMETERS:-}
  env_args=()
  IFS=, read -ra assignments <<<"$GATEWAY_FUNCTION_ENV"
  for a in "${assignments[@]}"; do env_args+=(--env "$a"); done
  param_args=()
  IFS=, read -ra parameters <<<"$GATEWAY_PARAMETERS"
  for p in "${parameters[@]}"; do param_args+=(--parameter "$p"); done
  "$PY" infra/local/stack.py functions --dir "$DIR" --port 0 --concurrency "${GATEWAY_CONCURRENCY:-4}" --no-reload "${env_args[@]}"
  "$PY" infra/local/stack.py gateway --dir "$DIR" "${param_args[@]}"
  GATEWAY_URL=$(cat "$DIR/gateway.url")
  export GATEWAY_URL
fi

"$@"
