#!/usr/bin/env bash
# The project's one test command: formatting, lints, then every test of the workspace against
# real parts (SQLite in temp dirs, real servers on loopback ports, the real `mc` binary).
# Installs nothing system-wide today: the embedded profile needs no external service.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE=1

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast --test-threads "${MC_TEST_THREADS:-4}"
else
  cargo test --workspace --locked --no-fail-fast
fi

echo "== benchmark smoke run (small sizes; real figures: see README)"
cargo run --quiet --locked -p mc-bench -- --preload 300 --creates 300 --samples 50 --klusters 3
