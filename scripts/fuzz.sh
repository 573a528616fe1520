#!/usr/bin/env bash
# Fuzz the pure decoders for a bounded time per target.
#
#   scripts/fuzz.sh            # 60 s per target
#   scripts/fuzz.sh 600        # 10 min per target
#
# The harness (fuzz/) runs on the stable toolchain (cargo-fuzz would need
# nightly): it mutates the committed fixture payloads, reseals them with a
# valid CRC and checks that decoding never panics or hangs. Crashing inputs
# land in fuzz/artifacts/<target>/ as hex; turn each into a unit test.
# Extra seeds may be put in fuzz/corpus/ (one hex payload per file).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
secs="${1:-60}"
cargo build --release --quiet --manifest-path "$root/fuzz/Cargo.toml"
status=0
for target in decode envelope; do
    "$root/fuzz/target/release/kbdump-fuzz" "$target" "$secs" || status=1
done
exit $status
