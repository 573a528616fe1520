#!/usr/bin/env bash
# Benchmark: `kbdump rebuild` vs KATO's Python rehydration algorithm
# (benches/rebuild_baseline.py) and vs the physical limit, on the same
# ClickHouse data, in one run.
#
#   scripts/bench-rebuild.sh [PATTERNS] [KBS] [RUNS]
#       (default 250850 patterns in 4 kb_ids, the size of KATO's incident; 3 runs)
#
# Starts a private clickhouse-server and three redis-servers on free
# loopback ports (all removed at exit), seeds a KATO-like dataset, and per
# run times, each into an emptied server:
#   - kato:   the Python baseline;
#   - kbdump: `kbdump rebuild`;
#   - before: an earlier kbdump binary, when KBDUMP_BEFORE names one;
#   - pipe:   `redis-cli --pipe` of `RESTORE key 0 payload REPLACE` for every
#             key a rebuild writes (DUMP payloads taken from the rebuilt
#             server once, before the runs), i.e. the server's own limit;
#   - read:   reading the rows from ClickHouse (`SELECT name, pattern_data
#             ... FORMAT RowBinary` over HTTP into /dev/null).
# The limit is pipe + read. Server CPU is used_cpu_sys + used_cpu_user of
# INFO cpu, before and after each writer. Runs rotate which writer goes
# first; the summary gives medians and every run's wall times.
set -euo pipefail
PATTERNS=${1:-250850}
KBS=${2:-4}
RUNS=${3:-3}
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

echo "building kbdump and bench_tool (release)..." >&2
# shellcheck source=lib/bench-tool.sh
source "$ROOT/scripts/lib/bench-tool.sh"

HTTP=$(port); TCP=$(port); RA=$(port); RB=$(port); RC=$(port)
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
for p in "$RA" "$RB" "$RC"; do
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
cpu() { redis-cli -p "$1" info cpu | tr -d '\r' | awk -F: '$1 == "used_cpu_sys" || $1 == "used_cpu_user" { s += $2 } END { print s }'; }
CHQ="$CH/?database=kato"

# One writer into an emptied server: prints "name wall server_cpu keys".
timed() {
  local name=$1 p=$2; shift 2
  redis-cli -p "$p" flushall >/dev/null
  local c0 t0 t1 c1
  c0=$(cpu "$p"); t0=$(now)
  "$@" >/dev/null
  t1=$(now); c1=$(cpu "$p")
  python3 -c "print('$name', $t1 - $t0, $c1 - $c0, $(redis-cli -p "$p" dbsize))"
}
run_kato() { python3 "$ROOT/benches/rebuild_baseline.py" --clickhouse "$CHQ" --redis "redis://127.0.0.1:$RA" --all; }
run_kbdump() { "$1" rebuild --quiet --clickhouse "$CHQ" --redis "redis://127.0.0.1:$RB"; }
run_pipe() { redis-cli -p "$RC" --pipe < "$WORK/restore.resp"; }
read_rows() {
  local t0 t1; t0=$(now)
  curl -sf "$CH/" --data-binary "SELECT name, pattern_data FROM kato.patterns_data FORMAT RowBinary" >/dev/null
  t1=$(now); python3 -c "print('read', $t1 - $t0, 0, 0)"
}

echo "DUMP payloads of the rebuilt keys, as RESTORE ... REPLACE commands..." >&2
run_kbdump "$KBDUMP" >/dev/null
"$KBDUMP" export --quiet --redis "redis://127.0.0.1:$RB" -o "$WORK/rebuilt.kbd" >/dev/null
"$TOOL" restore-commands --replace "$WORK/rebuilt.kbd" > "$WORK/restore.resp"

WRITERS=(kato kbdump pipe read)
[ -n "${KBDUMP_BEFORE:-}" ] && WRITERS+=(before)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
: > "$WORK/times"
for run in $(seq "$RUNS"); do
  n=${#WRITERS[@]}
  for i in $(seq 0 $((n - 1))); do
    w=${WRITERS[$(((i + run - 1) % n))]}
    echo "run $run: $w" >&2
    case $w in
      kato) timed kato "$RA" run_kato ;;
      kbdump) timed kbdump "$RB" run_kbdump "$KBDUMP" ;;
      before) timed before "$RB" run_kbdump "$KBDUMP_BEFORE" ;;
      pipe) timed pipe "$RC" run_pipe ;;
      read) read_rows ;;
    esac >> "$WORK/times"
  done
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$WORK/times" "$PATTERNS" "$KBS" "$LOAD0" "$LOAD1" "$(redis-server --version | awk '{print $3}' | sed 's/^v=//')" <<'PY'
import statistics, sys
from collections import defaultdict
path, n, kbs, load0, load1, version = sys.argv[1:7]
rows = defaultdict(list)
for line in open(path):
    name, wall, cpu, keys = line.split()
    rows[name].append((float(wall), float(cpu), int(keys)))
med = lambda name, i: statistics.median(r[i] for r in rows[name])
keys = {name: {r[2] for r in rs} for name, rs in rows.items() if name != "read"}
print(f"dataset: {n} patterns in {kbs} kb_ids, {sorted(keys['kbdump'])[0]:,} keys; server {version}; "
      f"{len(rows['kbdump'])} runs; load average before/after: {load0} / {load1}")
limit = med("pipe", 0) + med("read", 0)
print("| writer | wall s (median) | server CPU s (median) | wall s, each run |")
print("|---|---:|---:|---|")
labels = {"kato": "KATO's script (rebuild_baseline.py)", "kbdump": "kbdump rebuild",
          "before": "kbdump rebuild, before", "pipe": "redis-cli --pipe of the RESTOREs",
          "read": "read the rows from ClickHouse"}
for name in ["kato", "before", "kbdump", "pipe", "read"]:
    if name in rows:
        each = " / ".join(f"{r[0]:.2f}" for r in rows[name])
        cpu = "–" if name == "read" else f"{med(name, 1):.2f}"
        print(f"| {labels[name]} | {med(name, 0):.2f} | {cpu} | {each} |")
print(f"| **limit** (pipe + read) | {limit:.2f} | | |")
print()
print(f"kbdump / limit: {med('kbdump', 0) / limit:.2f}x (goal <= 1.3x); "
      f"KATO / kbdump: {med('kato', 0) / med('kbdump', 0):.1f}x (goal >= 10x)")
if "before" in rows:
    print(f"before / kbdump: {med('before', 0) / med('kbdump', 0):.2f}x")
bad = {name: k for name, k in keys.items() if k != keys["kbdump"]}
if bad:
    print(f"WARNING: key counts differ: {keys}"); sys.exit(1)
PY
