#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for SECONDS each (default 30), one after the other, starting
# from the committed seeds (fuzz/seeds/TARGET) and the local corpus (fuzz/corpus/TARGET, not
# committed). Prints executions per target; exits non-zero at the first crash, leaving the
# input in fuzz/artifacts/TARGET/.
#
#   scripts/fuzz.sh [SECONDS] [TARGET…]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and a nightly toolchain (or stable
# with RUSTC_BOOTSTRAP=1). FUZZ_BUILD_FLAGS adds build flags (CI: `--dev --codegen-units 16`,
# a quicker build of slower code).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-30}"
shift || true
toolchain=()
if rustup run nightly rustc --version >/dev/null 2>&1; then
  toolchain=(+nightly)
else
  export RUSTC_BOOTSTRAP=1
fi
# shellcheck disable=SC2206
build_flags=(${FUZZ_BUILD_FLAGS:-})
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list)
fi
# No sanitizer: the code under test is safe Rust (panics, overflows and debug assertions are
# what a run finds).
cargo "${toolchain[@]}" fuzz build -s none "${build_flags[@]}"
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log="$(mktemp)"
  if ! cargo "${toolchain[@]}" fuzz run -s none "${build_flags[@]}" "$t" "corpus/$t" "seeds/$t" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -50 "$log"
    echo "FUZZ $t: CRASH (input in fuzz/artifacts/$t/)"
    exit 1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo "?")
  echo "FUZZ $t: ${seconds} s, ${execs} executions, coverage ${cov}, corpus $(ls "corpus/$t" | wc -l) inputs, no crash"
  rm -f "$log"
done
