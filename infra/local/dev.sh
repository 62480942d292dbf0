#!/usr/bin/env bash
# `make dev`: local stack, a demo user, every function under `cargo lambda watch`, and a
# curl command that works. Stop it all with `make stack-down`.
set -euo pipefail
cd "$(dirname "$0")/../.."

DIR=${1:-.local/stack}
PORT=${2:-9000}
PY=.local/venv/bin/python
DEMO_USER=demo
DEMO_PASSWORD=demo-password

"$PY" infra/local/stack.py up --dir "$DIR"
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

"$PY" infra/local/stack.py functions --dir "$DIR" --port "$PORT"
URL=$(cat "$DIR/functions.url")

echo "waiting for cargo lambda watch to build and answer (first build takes a while)..."
for _ in $(seq 1 600); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL/lambda-url/login/auth/login" \
    -H 'content-type: application/json' -d '{}' --max-time 60 || true)
  [ "$code" = 400 ] && break
  sleep 1
done
if [ "$code" != 400 ]; then
  echo "the login function did not answer; see $DIR/functions.log" >&2
  exit 1
fi

cat <<MSG

The local stack is up (variables in $DIR.env, logs in $DIR; stop with: make stack-down).
Log in as the demo user:

  curl -s -X POST $URL/lambda-url/login/auth/login \\
    -H 'content-type: application/json' \\
    -d '{"username":"$DEMO_USER","password":"$DEMO_PASSWORD"}'

Refresh and revoke live beside it: $URL/lambda-url/refresh/auth/refresh,
$URL/lambda-url/revoke/auth/revoke and $URL/lambda-url/revoke/auth/revoke-all
(README.md has a whole session). The public keys that verify the access tokens:

  curl -s $URL/lambda-url/jwks/.well-known/jwks.json

Or through a sample API Gateway event:

  PATH=\$PWD/.local/venv/bin:\$PATH cargo lambda invoke login --invoke-address 127.0.0.1 --invoke-port ${URL##*:} --data-file events/login-http-api.json

MSG
printf 'Answer right now: '
curl -s -X POST "$URL/lambda-url/login/auth/login" -H 'content-type: application/json' \
  -d "{\"username\":\"$DEMO_USER\",\"password\":\"$DEMO_PASSWORD\"}"
echo
