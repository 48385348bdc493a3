#!/usr/bin/env bash
# Runs plaint's whole test suite on a fresh Debian/Ubuntu machine: installs nats-server if
# it is missing (tests start their own servers on free ports; the machine's server on 4222
# is never used), then formatting, lints, and every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  echo "installing nats-server (Debian package)"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nats-server
fi
export PATH="$PATH:/usr/sbin"
nats-server --version

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
