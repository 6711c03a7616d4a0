#!/usr/bin/env bash
# Fuzzes every input parser for SECONDS each (default 60), one target after another, and fails
# if any target crashes (panic, broken property, timeout, out of memory). See docs/fuzzing.md.
#
#   scripts/fuzz.sh [SECONDS]                    # all targets
#   FUZZ_TARGETS="merge probe" scripts/fuzz.sh 300
#
# Needs cargo-fuzz (installed here if missing) and python3 (seed corpus). The one toolchain is
# stable: RUSTC_BOOTSTRAP=1 lets it take cargo-fuzz's nightly flags. Builds go to fuzz/target/.
set -euo pipefail

seconds=${1:-60}
case $seconds in '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;; esac
root=$(cd "$(dirname "$0")/.." && pwd)
fuzz=$root/fuzz
read -r -a targets <<<"${FUZZ_TARGETS:-inventory_ini inventory_yaml vars pki probe merge}"
# AddressSanitizer by default (cargo fuzz's default): without it, libFuzzer's timeout handler
# can deadlock in malloc instead of reporting the hang. FUZZ_SANITIZER=none runs about twice as
# fast. Each sanitizer has its own build directory, so switching does not rebuild the other.
sanitizer=${FUZZ_SANITIZER:-address}
target_dir=$fuzz/target/$([ "$sanitizer" = address ] && echo asan || echo "$sanitizer")

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
unset CARGO_TARGET_DIR # fuzz/target, apart from the main workspace's builds
cd "$fuzz"
cargo fuzz build -s "$sanitizer" --target-dir "$target_dir"
python3 seeds.py "$root"

# Freed memory is not held back for use-after-free checks (safe Rust), so -rss_limit_mb
# measures about what the code itself holds.
export ASAN_OPTIONS=${ASAN_OPTIONS:-quarantine_size_mb=16:malloc_context_size=5}
# Inventories and vars files are written to a scratch directory per process.
export TMPDIR=$fuzz/target/tmp
rm -rf "$TMPDIR" && mkdir -p "$TMPDIR"
trap 'rm -rf "$TMPDIR"' EXIT

failed=()
summary=()
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "regressions/$target" "artifacts/$target"
  log=$fuzz/target/fuzz-$target.log
  echo "== $target: ${seconds}s (log: ${log#"$root"/})"
  status=0
  # corpus/ collects new inputs; regressions/ holds reproducers of crashes found before,
  # replayed first. -timeout: one input taking over 2 s is a hang; -rss_limit_mb: memory.
  # The outer timeout only guards against libFuzzer itself hanging.
  timeout --kill-after=30 $((seconds + 600)) \
    cargo fuzz run -s "$sanitizer" --target-dir "$target_dir" "$target" \
    "corpus/$target" "regressions/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=512 -timeout=2 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  line="$target: ${runs:-?} executions in ${took:-?} s"
  if [ "$status" -ne 0 ]; then
    artifact=$(sed -n 's/.*Test unit written to \(.*\)/\1/p' "$log" | tail -1)
    line="$line; CRASH (exit $status) ${artifact:+-> $artifact}"
    grep -m1 -E "panicked at|ERROR: libFuzzer|==ERROR" "$log" >&2 || tail -20 "$log" >&2
    failed+=("$target")
  fi
  echo "$line"
  summary+=("$line")
done

echo
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "crashes in: ${failed[*]} (reproduce: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s $sanitizer --target-dir ${target_dir#"$fuzz"/} <target> <artifact>)" >&2
  exit 1
fi
