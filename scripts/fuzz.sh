#!/usr/bin/env bash
# Builds every fuzz target in fuzz/ and runs each for a bounded time with
# libFuzzer, one after the other; prints executions per target and fails if
# any target crashed, hung or leaked past the memory limit.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  default 60
#   TARGET              default: every target (`cargo fuzz list`)
#   FUZZ_WORK_DIR       keep the grown corpus there across runs (default: a
#                       temp dir, deleted on exit; never the committed seeds)
#
# Works on stable Rust: `-s none` leaves out AddressSanitizer, whose
# `-Zsanitizer` flag is nightly-only (the fuzzed code has no unsafe of its own,
# and panics, overflows and debug assertions are caught without it). On a
# nightly toolchain, `FUZZ_SANITIZER=address` turns it back on.
# Reproducers of crashes land in fuzz/artifacts/<target>/ (gitignored).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
shift || true
case $secs in '' | *[!0-9]*) echo "fuzz: SECONDS_PER_TARGET must be a number, got '$secs'" >&2; exit 2 ;; esac

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

# The same flags for build and run, or `run` would rebuild. 16 codegen
# units build much faster than cargo-fuzz's default of 1 on small machines,
# for slightly slower targets.
flags=(-s "${FUZZ_SANITIZER:-none}" --codegen-units 16)

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

echo "== fuzz: build"
cargo fuzz build "${flags[@]}"

if [ -n "${FUZZ_WORK_DIR:-}" ]; then
  work=$FUZZ_WORK_DIR
  mkdir -p "$work"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi

failed=()
summary=()
for target in "${targets[@]}"; do
  echo "== fuzz: $target for ${secs}s"
  mkdir -p "$work/$target" "fuzz/artifacts/$target"
  log="$work/$target.log"
  # New inputs go to the first corpus dir (the work copy); the committed
  # seeds are only read.
  status=0
  cargo fuzz run "${flags[@]}" "$target" "$work/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$secs" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$target/" >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
  corpus=$(find "$work/$target" -type f | wc -l)
  if [ "$status" -ne 0 ]; then
    failed+=("$target")
    # The panic message and the reproducer's path.
    grep -E "panicked at|^SUMMARY|Test unit written|==ERROR|ERROR: libFuzzer" "$log" | head -n 20 >&2 || true
    summary+=("$(printf '%-14s FAILED (exit %s) after %s executions; log %s' "$target" "$status" "${execs:-?}" "$log")")
    # Keep the log past the temp dir's cleanup.
    cp "$log" "fuzz/artifacts/$target/last-run.log"
  else
    summary+=("$(printf '%-14s ok  %10s executions in %ss (%s/s), %s new corpus inputs' \
      "$target" "${execs:-?}" "$secs" "${rate:-?}" "$corpus")")
  fi
done

echo "== fuzz: summary"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in: ${failed[*]} (reproducers in fuzz/artifacts/)" >&2
  exit 1
fi
