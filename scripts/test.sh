#!/usr/bin/env bash
# The one command that runs every test of Logbook on a fresh machine of this project's kind
# (Rust toolchain, Python 3 with pip). It installs what the tests need, then runs them.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
cargo test --workspace --locked
