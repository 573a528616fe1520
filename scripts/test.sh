#!/usr/bin/env bash
# The single test command, for developers and CI alike: installs what is
# missing (scripts/provision.sh), then runs format check, clippy and every
# test with the server paths exported. Works from any cwd.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

step() { echo "==> $*" >&2; }

provision() {
  step "provision"
  "$ROOT/scripts/provision.sh"
  # provision.sh honours KBDUMP_CACHE too, so env.sh is found the same way.
  # shellcheck source=/dev/null
  source "${KBDUMP_CACHE:-$ROOT/.cache}/servers/env.sh"
}

# Fuzzing within a fixed budget: KBDUMP_FUZZ_SECS per target (default 50;
# five targets, 4.2 minutes of fuzzing, plus the instrumented build), 0 to
# skip. cargo-fuzz is installed once (it runs on the stable toolchain, see
# scripts/fuzz.sh). A machine that cannot build libFuzzer (no C++ compiler,
# cargo-fuzz not installable) skips with a message: the fuzz checks still
# ran over the regression corpus in `cargo test` (tests/it/fuzz_regressions.rs).
# A crash found fails the run.
fuzz() {
  local secs="${KBDUMP_FUZZ_SECS:-50}"
  if [ "$secs" = 0 ]; then
    step "fuzz: skipped (KBDUMP_FUZZ_SECS=0)"
    return 0
  fi
  step "fuzz ($secs s per target)"
  local started=$SECONDS
  if ! command -v c++ >/dev/null 2>&1; then
    skipped "no C++ compiler to build libFuzzer (apt-get install g++)"
    return 0
  fi
  if ! cargo fuzz --version >/dev/null 2>&1; then
    step "fuzz: installing cargo-fuzz (once; from crates.io)"
    if ! timeout 1200 cargo install cargo-fuzz --locked --quiet; then
      skipped "cargo-fuzz could not be installed (cargo install cargo-fuzz --locked)"
      return 0
    fi
  fi
  # Bounded whatever happens: the build, then $secs per target.
  # The first instrumented build takes about 15 minutes on 2 cores;
  # later ones reuse fuzz/target.
  timeout --kill-after=30 $((2400 + 3 * secs)) "$ROOT/scripts/fuzz.sh" "$secs"
  step "fuzz: done in $((SECONDS - started)) s"
}

# A fuzz step that cannot run says so where nobody misses it.
skipped() {
  {
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    echo "!!! fuzz: SKIPPED: $1"
    echo "!!! The fuzz checks still ran over the crafted corpus in cargo test"
    echo "!!! (tests/it/fuzz_regressions.rs), but no new inputs were tried."
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  } >&2
}

main() {
  cd "$ROOT"
  provision
  step "cargo fmt --check"
  cargo fmt --all --check
  step "cargo clippy"
  cargo clippy --all-targets -- -D warnings
  step "cargo doc"
  RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet
  step "cargo test"
  cargo test
  fuzz
}

main "$@"
