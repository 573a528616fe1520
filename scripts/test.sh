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
}

main "$@"
