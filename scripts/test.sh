#!/usr/bin/env bash
# Runs every test of otlp-gateway on a fresh machine: installs what the tests
# need, then checks formatting, lints and runs the whole suite.
#
# What the tests need: the Rust toolchain, crates from crates.io, a
# Prometheus server (Debian's `prometheus` package, 2.42 on bookworm) for
# tests/prometheus_remote_write.rs, which starts it itself on a free port, and
# `osmem-server` from PyPI (an in-memory OpenSearch emulator, its binary inside
# the wheel), the second opinion of one Elasticsearch test. The OTLP clients
# are the `opentelemetry-otlp` crates; the downstream OTLP collector,
# Elasticsearch and the Jaeger api_v2 collector are in-process doubles
# (tests/support/).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== prometheus (remote-write tests)"
if ! command -v prometheus >/dev/null; then
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    # The package may try to start its service on :9090; the tests never use it.
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
    if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
        $sudo systemctl stop prometheus || true
        $sudo systemctl disable prometheus || true
    elif command -v service >/dev/null; then
        $sudo service prometheus stop >/dev/null 2>&1 || true
    fi
fi
prometheus --version 2>&1 | sed -n 1p

# Installed once; quiet. The test it serves fails rather than skips when this is set.
if ! python3 -c "import osmem_server" >/dev/null 2>&1; then
  echo "== pip install osmem-server"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore osmem-server
fi
export OTLP_GATEWAY_REQUIRE_OSMEM=1

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
