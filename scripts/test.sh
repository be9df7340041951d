#!/usr/bin/env bash
# Runs the whole test suite: unit tests, end-to-end tests against throwaway daemons (real kernel,
# the real docker CLI, a reference dockerd), and docker-py tests. Each test cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
scripts/deps.sh test

echo "== build"
cargo build --workspace --bins
export BERTH_BIN_DIR="${CARGO_TARGET_DIR:-$PWD/target}/debug"

echo "== cargo test"
cargo test --workspace --no-fail-fast -- --test-threads=2

echo "== docker-py"
if [ ! -x .venv/bin/pytest ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q 'docker>=7' pytest
fi
.venv/bin/pytest -q tests/python
