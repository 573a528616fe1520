#!/usr/bin/env bash
# Benchmark: `kbdump rebuild` vs KATO's Python rehydration algorithm
# (benches/rebuild_baseline.py) on the same ClickHouse data, in one run.
#
#   scripts/bench-rebuild.sh [PATTERNS] [KBS]     (default 50000 patterns in 2 kb_ids)
#
# Starts a private clickhouse-server and two redis-servers on free loopback
# ports (all removed at exit), seeds a KATO-like dataset, runs both
# rebuilds into empty Redis servers, checks they wrote the same number of
# keys, and prints both wall times and the ratio.
set -euo pipefail
PATTERNS=${1:-50000}
KBS=${2:-2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CH_BIN=${KBDUMP_CLICKHOUSE_SERVER:-$(command -v clickhouse-server || echo /usr/sbin/clickhouse-server)}
WORK=$(mktemp -d -t kbdump-bench-XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
# BENCH_KEEP=1 leaves the servers and data running for inspection.
[ -n "${BENCH_KEEP:-}" ] && trap - EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "building kbdump (release)..." >&2
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
KBDUMP="$ROOT/target/release/kbdump"

HTTP=$(port); TCP=$(port); RA=$(port); RB=$(port)
mkdir -p "$WORK/ch"
cat > "$WORK/ch/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$WORK/ch/log/server.log</log><errorlog>$WORK/ch/log/err.log</errorlog><size>10M</size><count>1</count></logger>
  <http_port>$HTTP</http_port><tcp_port>$TCP</tcp_port><listen_host>127.0.0.1</listen_host>
  <path>$WORK/ch/data/</path><tmp_path>$WORK/ch/tmp/</tmp_path>
  <user_files_path>$WORK/ch/user_files/</user_files_path><format_schema_path>$WORK/ch/fs/</format_schema_path>
  <users_config>$WORK/ch/users.xml</users_config>
  <default_profile>default</default_profile><default_database>default</default_database>
  <mark_cache_size>67108864</mark_cache_size><timezone>UTC</timezone>
</yandex>
XML
cat > "$WORK/ch/users.xml" <<XML
<?xml version="1.0"?>
<yandex><profiles><default></default></profiles>
<users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
<quotas><default></default></quotas></yandex>
XML
"$CH_BIN" --config-file="$WORK/ch/config.xml" >"$WORK/ch/stdout.log" 2>&1 & PIDS+=($!)
for p in "$RA" "$RB"; do
  redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" >/dev/null 2>&1 & PIDS+=($!)
done
CH="http://127.0.0.1:$HTTP"
for _ in $(seq 300); do curl -sf "$CH/ping" >/dev/null && break; sleep 0.1; done
q() { curl -sf "$CH/" --data-binary "$1"; }
q "CREATE DATABASE kato"
q "CREATE TABLE kato.patterns_data (kb_id String, name String, pattern_data Array(Array(String)), length UInt32) ENGINE = MergeTree PARTITION BY kb_id ORDER BY (kb_id, length, name)"

echo "seeding $PATTERNS patterns in $KBS kb_ids..." >&2
python3 - "$PATTERNS" "$KBS" <<'PY' | curl -sf "$CH/?query=INSERT%20INTO%20kato.patterns_data%20FORMAT%20JSONEachRow" --data-binary @-
import hashlib, json, random, sys
n, kbs = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(42)
vocab = 15000
for i in range(n):
    kb = f"node{i % kbs}_kato"
    events = [[f"VISION|obj{int(rng.paretovariate(1.2)) % vocab}" if rng.random() < 0.7 else f"WORD|w{rng.randrange(vocab)}"
               for _ in range(rng.randint(1, 5))] for _ in range(rng.randint(3, 8))]
    name = hashlib.sha1(json.dumps([kb, i, events]).encode()).hexdigest()
    print(json.dumps({"kb_id": kb, "name": name, "pattern_data": events,
                      "length": sum(len(e) for e in events)}))
PY
q "SELECT kb_id, count() FROM kato.patterns_data GROUP BY kb_id ORDER BY kb_id" >&2

now() { python3 -c 'import time; print(time.perf_counter())'; }
t0=$(now)
python3 "$ROOT/benches/rebuild_baseline.py" --clickhouse "$CH/?database=kato" --redis "redis://127.0.0.1:$RA" --all >/dev/null
t1=$(now)
"$KBDUMP" rebuild --quiet --clickhouse "$CH/?database=kato" --redis "redis://127.0.0.1:$RB" >/dev/null
t2=$(now)
KA=$(redis-cli -p "$RA" dbsize); KB=$(redis-cli -p "$RB" dbsize)
T3=$(now); MEM=$( { /usr/bin/time -f "%M" "$KBDUMP" rebuild --quiet --dry-run --clickhouse "$CH/?database=kato" --redis "redis://127.0.0.1:$RB" >/dev/null; } 2>&1 | tail -1 || echo "?"); echo "dry-run: $(python3 -c "import time; print(time.perf_counter()-$T3)") s" >&2
python3 - "$t0" "$t1" "$t2" "$KA" "$KB" "$PATTERNS" "$KBS" "$MEM" <<'PY'
import sys
t0, t1, t2 = map(float, sys.argv[1:4])
ka, kb, n, kbs, mem = sys.argv[4:9]
py, rs = t1 - t0, t2 - t1
print(f"dataset:          {n} patterns in {kbs} kb_ids")
print(f"python baseline:  {py:8.2f} s  ({ka} keys)")
print(f"kbdump rebuild:   {rs:8.2f} s  ({kb} keys)")
print(f"speedup:          {py / rs:8.1f}x")
print(f"kbdump peak RSS (dry run): {mem} KiB")
if ka != kb:
    print("WARNING: key counts differ"); sys.exit(1)
PY
