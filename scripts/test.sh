#!/usr/bin/env bash
# The whole test suite: format, lints, unit tests and the lab-backed end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --workspace --all-targets
# Leftovers of a killed earlier run would hold addresses and mounts.
./target/debug/virtfleet-lab down
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
./target/debug/virtfleet-lab down
