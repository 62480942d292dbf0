#!/usr/bin/env bash
# with-stack.sh DIR COMMAND...: start a private local stack in DIR (its own ports, so a
# running `make dev` stack is left alone), run COMMAND with the stack's variables, and
# stop the stack again whatever happened.
set -euo pipefail
cd "$(dirname "$0")/../.."

PY=.local/venv/bin/python
DIR=$1
shift

cleanup() { "$PY" infra/local/stack.py down --dir "$DIR" || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

"$PY" infra/local/stack.py up --dir "$DIR"
set -a
# shellcheck disable=SC1091
. "$DIR.env"
set +a
export TOKENAUTH_KMS_EMULATOR="$PWD/$PY $PWD/infra/local/kms_emulator.py"
export TOKENAUTH_TLS_PROXY="$PWD/$PY $PWD/infra/local/tls_proxy.py"

"$@"
