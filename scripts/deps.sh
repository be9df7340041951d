#!/usr/bin/env bash
# Installs the Debian packages berth needs: `deps.sh build` for building and running,
# `deps.sh test` adds what the test suite drives (a reference Docker, busybox for test images,
# Python for docker-py). Idempotent: installs only what is missing.
set -euo pipefail
# tini: its static build is docker-init for `--init`; runc: the external runtime tests drive
want=(pkg-config gcc libseccomp-dev iproute2 nftables tini)
if [ "${1:-build}" = test ]; then
  want+=(runc busybox-static docker.io docker-compose docker-registry skopeo openssl tmux python3-venv python3-pip)
fi
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null || { echo "berth needs a Rust toolchain >= 1.85 (rustup) on PATH" >&2; exit 1; }
