#!/usr/bin/env bash
# `make dev`: local stack, a demo user, every function under `cargo lambda watch`, and a
# curl command that works. Stop it all with `make stack-down`.
set -euo pipefail
cd "$(dirname "$0")/../.."

DIR=${1:-.local/stack}
PORT=${2:-9000}
GATEWAY_PORT=${3:-3000}
PY=.local/venv/bin/python
DEMO_USER=demo
DEMO_PASSWORD=demo-password

# The issuer is the gateway's own URL (http://127.0.0.1:$GATEWAY_PORT): a client library
# pointed at it discovers every endpoint from the metadata.
"$PY" infra/local/stack.py up --dir "$DIR" --gateway-port "$GATEWAY_PORT"
set -a
# shellcheck disable=SC1091
. "$DIR.env"
set +a

cargo build --locked --workspace --bins
if out=$(printf '%s\n' "$DEMO_PASSWORD" | target/debug/authctl user add "$DEMO_USER" --scope "read write" 2>&1); then
  echo "$out"
elif grep -q "already exists" <<<"$out"; then
  echo "demo user already exists"
else
  echo "$out" >&2
  exit 1
fi

# Two instances of each function, so two requests at once really run at once.
"$PY" infra/local/stack.py functions --dir "$DIR" --port "$PORT" --concurrency 2
URL=$(cat "$DIR/functions.url")
echo "starting the gateway on 127.0.0.1:$GATEWAY_PORT; it waits for each function to answer once (the first build takes a while)..."
if ! "$PY" infra/local/stack.py gateway --dir "$DIR"; then
  echo "the gateway did not come up; logs in $DIR (gateway.log, functions.log)" >&2
  exit 1
fi
GW=$(cat "$DIR/gateway.url")

cat <<MSG

The local API is up at $GW, routed as infra/template.yaml routes it, with the Lambda
authorizer in front of /api/* (variables in $DIR.env, logs in $DIR; stop with: make stack-down).
Log in as the demo user, then call the protected route with the access token:

  curl -s -X POST $GW/auth/login -H 'content-type: application/json' \\
    -d '{"username":"$DEMO_USER","password":"$DEMO_PASSWORD"}'
  curl -s $GW/api/whoami -H "authorization: Bearer \$ACCESS_TOKEN"

README.md has the whole session (refresh, revoke, the 403 after the revocation lag).
The public keys that verify the access tokens: curl -s $GW/.well-known/jwks.json

The functions also answer directly under cargo lambda watch, with the sample events:

  PATH=\$PWD/.local/venv/bin:\$PATH cargo lambda invoke login --invoke-address 127.0.0.1 --invoke-port ${URL##*:} --data-file events/login-http-api.json

MSG
printf 'Answer right now: '
curl -s -X POST "$GW/auth/login" -H 'content-type: application/json' \
  -d "{\"username\":\"$DEMO_USER\",\"password\":\"$DEMO_PASSWORD\"}"
echo
