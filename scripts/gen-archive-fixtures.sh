#!/usr/bin/env bash
# Regenerate fixtures/archive/: the golden v1 archive, the records it must
# decode to (golden.records.jsonl), and its truncated, bad-checksum,
# bad-magic and future-version copies.
#
#   scripts/gen-archive-fixtures.sh
#
# The generator lives in tests/it/offline.rs (archive_fixtures): fixed header
# and clock, payloads captured from Redis 7.0 (fixtures/dump/redis-7.0.json),
# so the output is byte-for-byte reproducible; `cargo test` checks that it
# still is. golden.kbd is the "read forever" promise of format v1: do not
# regenerate it to make a reader change pass.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
mkdir -p fixtures/archive
KBDUMP_WRITE_ARCHIVE_FIXTURES=1 cargo test --quiet --test it offline::archive_fixtures_are_reproducible
ls -l fixtures/archive
