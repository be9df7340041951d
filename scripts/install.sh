#!/usr/bin/env bash
# Builds berth, installs berthd and berth into /usr/local/bin, and runs hello-world.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
scripts/deps.sh build
cargo build --release --bins
install -m 0755 target/release/berthd target/release/berth target/release/berth-shim /usr/local/bin/
# berth starts berthd on first use when it is not running.
berth run --rm hello-world
