#!/usr/bin/env bash
# Runs every test of otlp-gateway on a fresh machine: installs what the tests
# need, then formats-checks, lints and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tests need only the Rust toolchain today (real OTLP clients are crates; the
# downstream collectors are in-process doubles). Install cargo-nextest if missing? No:
# plain `cargo test` is used so nothing has to be downloaded besides crates.

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --all-targets --locked

echo "== doc tests"
cargo test --doc --locked
