#!/usr/bin/env bash
# Fuzz the DUMP decoder, the archive readers, the RDB reader and the AOF reader and replay
# with libFuzzer (cargo-fuzz),
# for a bounded time per target.
#
#   scripts/fuzz.sh                    # 60 s per target
#   scripts/fuzz.sh 600                # 10 min per target
#   scripts/fuzz.sh 60 archive_read    # one target
#
# Targets (fuzz/fuzz_targets/): decode, envelope, archive_read, rdb_read, aof_read.
# Seeds: every captured payload in fixtures/dump/*.json (decode, envelope;
# for rdb_read each wrapped in an RDB file as its server would write it),
# every archive in fixtures/archive/ and the hostile archives that
# tests/it/support/crafted.rs builds (archive_read); AOF command sequences
# in the shapes servers write (aof_read, from fuzz/src/lib.rs aof_seeds, written by
# the integration test binary). The growing corpus is kept in
# fuzz/corpus/<target>/ between runs. A crash is written to
# fuzz/artifacts/<target>/; replay it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>
# and turn it into a unit test next to the code it broke.
#
# cargo-fuzz wants nightly for its -Z flags; RUSTC_BOOTSTRAP=1 lets the
# stable toolchain accept them, so no nightly is needed. The first build
# takes a while (everything is instrumented); later runs reuse it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decode envelope archive_read rdb_read aof_read)
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is missing; install it with: cargo install cargo-fuzz" >&2
    exit 2
fi

seeds="$(mktemp -d)"
trap 'rm -rf "$seeds"' EXIT
python3 - "$root" "$seeds" <<'PY'
import json, pathlib, sys
root, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])

def crc64(data):
    # CRC-64/REDIS (Jones), reflected, bit by bit: seeds only.
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x95AC9329AC4BC9B5 if crc & 1 else 0)
    return crc

def rdb_file(payload):
    # One key "k" in db 0, as a server would write the file.
    version = int.from_bytes(payload[-10:-8], "little")
    head = (b"VALKEY%03d" % version) if version >= 80 else (b"REDIS%04d" % version)
    body = payload[:-10]
    data = head + b"\xfe\x00" + body[:1] + b"\x01k" + body[1:] + b"\xff"
    return data + crc64(data).to_bytes(8, "little")
for target in ("decode", "envelope", "archive_read", "rdb_read", "aof_read"):
    (out / target).mkdir()
for fixture in sorted((root / "fixtures/dump").glob("*.json")):
    for n, key in enumerate(json.loads(fixture.read_text())["keys"]):
        payload = bytes.fromhex(key["payload_hex"])
        for target in ("decode", "envelope"):
            (out / target / f"{fixture.stem}-{n}").write_bytes(payload)
        (out / "rdb_read" / f"{fixture.stem}-{n}").write_bytes(rdb_file(payload))
for archive in sorted((root / "fixtures/archive").glob("*.kbd")):
    (out / "archive_read" / archive.name).write_bytes(archive.read_bytes())
PY
# The crafted hostile archives (index lies, misplaced and repeated keys,
# bombs, damaged lengths), written by the integration test binary.
(cd "$root" && KBDUMP_CRAFTED_CORPUS="$seeds/archive_read" \
    cargo test --quiet --test it fuzz_regressions::write_crafted_corpus -- --ignored --exact \
    >/dev/null)
(cd "$root" && KBDUMP_AOF_CORPUS="$seeds/aof_read" \
    cargo test --quiet --test it fuzz_regressions::write_aof_corpus -- --ignored --exact \
    >/dev/null)

cd "$root/fuzz"
cargo fuzz build -O
status=0
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    echo "== $target: $secs s"
    if ! cargo fuzz run -O "$target" "corpus/$target" "$seeds/$target" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        2>"$seeds/$target.log"; then
        status=1
        tail -40 "$seeds/$target.log" >&2
    fi
    grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)" "$seeds/$target.log" || true
    echo "   corpus: $(ls "corpus/$target" | wc -l) inputs"
done
exit $status
