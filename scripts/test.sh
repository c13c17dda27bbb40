#!/usr/bin/env bash
# Runs every test of otlp-gateway on a fresh machine: installs what the tests
# need, then checks formatting, lints and runs the whole suite.
#
# What the tests need: only the Rust toolchain and crates from crates.io.
# The OTLP clients are the `opentelemetry-otlp` crates, and the downstream
# collector is an in-process fake (tests/support/fake_otlp.rs); nothing has
# to be installed with apt or pip for this suite.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "== cargo test (lib, bin, integration tests, benches in test mode, doc tests)"
cargo test --all-targets --locked 2>&1 | tee "$log"
cargo test --doc --locked 2>&1 | tee -a "$log"

# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f; exit (f > 0) }' "$log"
