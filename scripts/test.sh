#!/usr/bin/env bash
# The one command that runs every test of Logbook on a fresh machine of this project's kind
# (Rust toolchain, Python 3 with pip). It installs what the tests need, then runs them.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== python venv: tools/verify_journal.py (tests/independent_verifier.rs), moto_server (tests/eventbridge.rs, tests/s3.rs)"
# Idempotent: creates .venv once, and reinstalls only when tools/requirements.txt changed since
# the last successful install (a copy of it is kept in the venv as the stamp).
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! cmp -s tools/requirements.txt .venv/requirements.installed; then
    .venv/bin/pip install -q --disable-pip-version-check -r tools/requirements.txt
    cp tools/requirements.txt .venv/requirements.installed
fi
# moto_server (EventBridge + SQS emulation) for tests/eventbridge.rs, same stamp scheme.
if ! cmp -s tools/requirements-moto.txt .venv/requirements-moto.installed; then
    .venv/bin/pip install -q --disable-pip-version-check -r tools/requirements-moto.txt
    cp tools/requirements-moto.txt .venv/requirements-moto.installed
fi

# The Python package (python/, PyO3 + maturin) and its pytest suite's tools, same stamp scheme;
# the package itself is rebuilt and reinstalled every run (it is the code under test).
if ! cmp -s tools/requirements-python.txt .venv/requirements-python.installed; then
    .venv/bin/pip install -q --disable-pip-version-check -r tools/requirements-python.txt
    cp tools/requirements-python.txt .venv/requirements-python.installed
fi

echo "== headless Chromium for tests/dashboard.rs (Debian packages chromium, chromium-driver)"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        chromium chromium-driver >/dev/null
fi

echo "== tests"
cargo test --workspace --locked

echo "== python package: pip install ./python into .venv, then its pytest suite"
PATH="$PWD/.venv/bin:$PATH" .venv/bin/pip install -q --disable-pip-version-check --no-build-isolation ./python
.venv/bin/python -m pytest -q python/tests
