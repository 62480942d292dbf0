#!/usr/bin/env bash
# `make test`: build, start a private local stack (its own ports and state directory, so a
# running `make dev` stack is left alone), run every test against it, and stop it again
# whatever happened.
set -euo pipefail
cd "$(dirname "$0")/../.."

PY=.local/venv/bin/python
DIR=.local/test-stack

cargo build --workspace --all-targets --locked

cleanup() { "$PY" infra/local/stack.py down --dir "$DIR" || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

"$PY" infra/local/stack.py up --dir "$DIR"
set -a
# shellcheck disable=SC1091
. "$DIR/stack.env"
set +a
export TOKENAUTH_STACK_DIR="$PWD/$DIR"
export TOKENAUTH_KMS_EMULATOR="$PWD/$PY $PWD/infra/local/kms_emulator.py"

cargo test --workspace --locked
