#!/usr/bin/env bash
# The whole test suite: format, lints, unit tests and the lab-backed end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo fmt --all -- --check
shellcheck -s sh crates/engine/src/script/lib.sh
cargo build --workspace --all-targets
# The release binary as a user builds it at the root: `cargo build --release` (default-members).
cargo build --release
./target/release/virtfleet --help >/dev/null
cargo clippy --workspace --all-targets -- -D warnings
# Labs already here (a developer's demo lab, or one a killed earlier run left) are not this
# run's to judge; only the ones that appear during it are leaks.
labs_before=$(./target/debug/virtfleet-lab list | sort)
cargo test --workspace
# The end-to-end suite again, on docker hosts (the first pass ran it on podman). Skipped here:
# `engines::` (picks its own engines: mixed fleets, a wrong engine), the bad-input tests
# (they contact no host), and the transition's control and SASL variant (they prove the
# checker and the playbook's data, not the engine), and the plain systemd hosts (no container
# engine at all); all ran above.
# (--workspace, not -p: the same feature set as above, so nothing is rebuilt.)
VIRTFLEET_TEST_ENGINE=docker cargo test --workspace --test e2e -- \
  --skip engines:: --skip bad_input \
  --skip remediate::the_checker_sees --skip remediate::a_fleet_on_sasl --skip host_libvirt::
# Every test tears its lab down (also on panic); anything listed here leaked.
leftover=$(comm -13 <(echo "$labs_before") <(./target/debug/virtfleet-lab list | sort) | tr '\n' ' ')
if [ -n "$labs_before" ]; then
  echo "labs present before the tests, not counted: $(echo "$labs_before" | tr '\n' ' ')" >&2
fi
if [ -n "$leftover" ]; then
  echo "labs left behind: $leftover(remove with: virtfleet-lab down <lab>)" >&2
  exit 1
fi
