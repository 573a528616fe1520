#!/usr/bin/env bash
# Benchmarks kbdump side by side with the reference tools, in one run, on one
# KATO-like dataset (see benches/bench_tool.rs), and prints median wall times,
# ratios, CPU seconds and peak memory.
#
#   scripts/bench.sh [--quick] [--patterns N] [--small-patterns N] [--runs R]
#                    [--write-doc] [--keep]
#
# Pairs (kbdump vs reference, alternated, R runs each):
#   export-rdb   kbdump export --method rdb (the server's snapshot, every
#                key)                              vs  redis-cli --rdb (whole db)
#   export-rdb-one  the same, --kb (1 of 4)        vs  redis-cli --rdb (whole db)
#   export-all   kbdump export --method scan (every kb_id)  vs  redis-cli --rdb
#   export-one   kbdump export --method scan --kb (1 of 4)  vs  redis-cli --rdb
#   restore      kbdump restore into empty server vs  redis-cli --pipe of the
#                same RESTORE commands (pre-generated from the same archive)
# Offline, on the dump.rdb that redis-cli --rdb wrote (MB/s of file, goal
# ≥ 300 MB/s on one core):
#   rdb-ls       kbdump ls dump.rdb (every key, one line each)
#   rdb-export   kbdump export --from dump.rdb -o rdb.kbd (read, classify,
#                compress and write an archive)
# Then the exports (both methods) and a restore at a second, smaller size to
# show that peak memory does not grow with the dataset.
#
# Size: --patterns N (or KBDUMP_BENCH_PATTERNS), default 250000 patterns in
# 4 kb_ids (about 1.8M keys, 600 MB in Redis); --quick is 25000. The
# second size defaults to a tenth of the first. Runs: --runs R (or
# KBDUMP_BENCH_RUNS), default 3.
#
# Needs redis-server/redis-cli (scripts/provision.sh installs them),
# /usr/bin/time and python3. Servers are private (free loopback ports, a
# temporary directory, no persistence) and are stopped on exit.
# --write-doc replaces the results section of docs/BENCHMARKS.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PATTERNS="${KBDUMP_BENCH_PATTERNS:-250000}"
SMALL=""
RUNS="${KBDUMP_BENCH_RUNS:-3}"
WRITE_DOC=0
KEEP=0
ONE_KB=bench1_kato

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) PATTERNS=25000 ;;
    --patterns) PATTERNS=$2; shift ;;
    --small-patterns) SMALL=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    --write-doc) WRITE_DOC=1 ;;
    --keep) KEEP=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
SMALL=${SMALL:-$((PATTERNS / 10))}

log() { echo "bench: $*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in redis-server redis-cli python3; do
  command -v "$tool" >/dev/null || die "$tool not found; run scripts/provision.sh"
done
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found (Debian package 'time')"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/kbdump-bench.XXXXXX")
SERVER_PIDS=()
cleanup() {
  local pid
  for pid in "${SERVER_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${SERVER_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [[ $KEEP -eq 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- build
log "building (release)"
# shellcheck source=lib/bench-tool.sh
source "$ROOT/scripts/lib/bench-tool.sh"

# ---------------------------------------------------------------- servers
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_server NAME -> sets PORT_<NAME>
start_server() {
  local name=$1 port dir
  port=$(free_port)
  dir="$WORK/$name"
  mkdir -p "$dir"
  # No persistence; no delay before a diskless RDB transfer (the default 5 s
  # wait for more replicas would inflate the redis-cli --rdb reference).
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no \
    --repl-diskless-sync-delay 0 --logfile "$dir/server.log" --daemonize no &
  SERVER_PIDS+=($!)
  local i
  for i in $(seq 100); do
    redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
    [[ $i -eq 100 ]] && die "redis-server on port $port did not start (see $dir/server.log)"
  done
  printf -v "PORT_$name" '%s' "$port"
}

start_server src
start_server dst
SRC="redis://127.0.0.1:$PORT_src"
DST="redis://127.0.0.1:$PORT_dst"

info_field() { # port field
  redis-cli -p "$1" info all | tr -d '\r' | awk -F: -v f="$2" '$1 == f { print $2 }'
}

# CPU seconds of a server process, its forked children included.
server_cpu() {
  redis-cli -p "$1" info cpu | tr -d '\r' | awk -F: '
    $1 == "used_cpu_sys" || $1 == "used_cpu_user" || $1 == "used_cpu_sys_children" || $1 == "used_cpu_user_children" { s += $2 }
    END { printf "%.3f", s }'
}

# Waits until no fork child (RDB transfer) is running, so that its CPU is
# accounted and the next measurement starts on a quiet server.
server_idle() {
  local i
  for i in $(seq 600); do
    [[ $(info_field "$1" rdb_bgsave_in_progress) == 0 ]] && return 0
    sleep 0.1
  done
  die "server on port $1 stays busy"
}

seed() { # patterns
  log "seeding $1 patterns into $SRC"
  redis-cli -p "$PORT_src" flushall sync >/dev/null
  "$TOOL" seed --patterns "$1" | redis-cli -p "$PORT_src" --pipe > "$WORK/seed.log" 2>&1 \
    || { tail -5 "$WORK/seed.log" >&2; die "seeding failed"; }
  grep -q 'errors: 0,' "$WORK/seed.log" || { tail -5 "$WORK/seed.log" >&2; die "seeding had errors"; }
  KEYS=$(redis-cli -p "$PORT_src" dbsize)
  MEM=$(info_field "$PORT_src" used_memory)
  log "seeded $KEYS keys, used_memory $((MEM >> 20)) MiB"
}

RESULTS="$WORK/results.tsv"
: > "$RESULTS"

# measure SIZE BENCH TOOL SERVER_PORT CMD... : runs CMD under /usr/bin/time,
# appends size, bench, tool, wall s, max RSS KiB, client CPU s, server CPU s.
measure() {
  local size=$1 bench=$2 tool=$3 port=$4
  shift 4
  server_idle "$port"
  local before after
  before=$(server_cpu "$port")
  /usr/bin/time -f '%e %M %U %S' -o "$WORK/time.out" "$@" > "$WORK/cmd.out" 2> "$WORK/cmd.err" \
    || { cat "$WORK/cmd.err" >&2; die "$bench/$tool failed: $*"; }
  server_idle "$port"
  after=$(server_cpu "$port")
  local wall rss user sys
  read -r wall rss user sys < <(tail -n1 "$WORK/time.out")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$size" "$bench" "$tool" "$wall" "$rss" \
    "$(awk -v a="$user" -v b="$sys" 'BEGIN { printf "%.2f", a + b }')" \
    "$(awk -v a="$after" -v b="$before" 'BEGIN { printf "%.2f", a - b }')" >> "$RESULTS"
  log "$(printf '%-11s %-8s %7ss  rss %6s KiB' "$bench" "$tool" "$wall" "$rss")"
}

flush_dst() { redis-cli -p "$PORT_dst" flushall sync >/dev/null; }

check_dst() { # what
  local n
  n=$(redis-cli -p "$PORT_dst" dbsize)
  [[ $n == "$KEYS" ]] || die "$1 left $n keys on the target, expected $KEYS"
}

pipe_restore() { # stream file; fails on any error reply
  redis-cli -p "$PORT_dst" --pipe < "$1" > "$WORK/pipe.log" 2>&1
  grep -q 'errors: 0,' "$WORK/pipe.log"
}
export -f pipe_restore
export PORT_dst WORK

kb_export() { "$KBDUMP" --quiet export --method scan --redis "$SRC" --force -o "$@"; }
# kbdump export by METHOD into FILE, with any further arguments.
kb_method() { local method=$1; shift; "$KBDUMP" --quiet export --method "$method" --redis "$SRC" --force "$@"; }

run_pairs() { # size runs
  local size=$1 runs=$2 r
  kb_export "$WORK/all.kbd" >/dev/null
  "$TOOL" restore-commands "$WORK/all.kbd" > "$WORK/restore.resp" 2>/dev/null
  for r in $(seq "$runs"); do
    log "run $r/$runs"
    # Alternate which side goes first, so drift (caches, load) is shared.
    local order=(kbdump ref)
    [[ $((r % 2)) -eq 0 ]] && order=(ref kbdump)
    local side
    for side in "${order[@]}"; do
      if [[ $side == kbdump ]]; then
        measure "$size" export-rdb kbdump "$PORT_src" "$KBDUMP" --quiet export --method rdb --redis "$SRC" --force -o "$WORK/snap.kbd"
        measure "$size" export-rdb-one kbdump "$PORT_src" "$KBDUMP" --quiet export --method rdb --redis "$SRC" --force --kb "$ONE_KB" -o "$WORK/snap-one.kbd"
        measure "$size" export-all kbdump "$PORT_src" "$KBDUMP" --quiet export --method scan --redis "$SRC" --force -o "$WORK/all.kbd"
        measure "$size" export-one kbdump "$PORT_src" "$KBDUMP" --quiet export --method scan --redis "$SRC" --force --kb "$ONE_KB" -o "$WORK/one.kbd"
      else
        rm -f "$WORK/dump.rdb"
        measure "$size" export-all ref "$PORT_src" redis-cli -p "$PORT_src" --rdb "$WORK/dump.rdb"
      fi
    done
    # Offline reads of the snapshot just taken (no server involved).
    measure "$size" rdb-ls kbdump "$PORT_src" "$KBDUMP" ls "$WORK/dump.rdb"
    measure "$size" rdb-export kbdump "$PORT_src" "$KBDUMP" --quiet export --from "$WORK/dump.rdb" --force -o "$WORK/rdb.kbd"
    for side in "${order[@]}"; do
      flush_dst
      if [[ $side == kbdump ]]; then
        measure "$size" restore kbdump "$PORT_dst" "$KBDUMP" --quiet restore "$WORK/all.kbd" --redis "$DST"
      else
        measure "$size" restore ref "$PORT_dst" bash -c 'pipe_restore "$WORK/restore.resp"'
      fi
      check_dst "restore/$side"
    done
  done
  ARCHIVE_BYTES=$(stat -c %s "$WORK/all.kbd")
  RDB_BYTES=$(stat -c %s "$WORK/dump.rdb" 2>/dev/null || echo 0)
  flush_dst
}

START=$(date -u +%Y-%m-%dT%H:%MZ)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

seed "$PATTERNS"
BIG_KEYS=$KEYS BIG_MEM=$MEM
run_pairs "$PATTERNS" "$RUNS"
BIG_ARCHIVE=$ARCHIVE_BYTES BIG_RDB=$RDB_BYTES

seed "$SMALL"
SMALL_KEYS=$KEYS SMALL_MEM=$MEM
measure "$SMALL" export-rdb kbdump "$PORT_src" "$KBDUMP" --quiet export --method rdb --redis "$SRC" --force -o "$WORK/snap.kbd"
measure "$SMALL" export-all kbdump "$PORT_src" "$KBDUMP" --quiet export --method scan --redis "$SRC" --force -o "$WORK/all.kbd"
flush_dst
measure "$SMALL" restore kbdump "$PORT_dst" "$KBDUMP" --quiet restore "$WORK/all.kbd" --redis "$DST"
check_dst "restore (small)"

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
CORES=$(nproc)
MEM_TOTAL=$(awk '/^MemTotal/ { printf "%d", $2 / 1048576 + 0.5 }' /proc/meminfo)
REDIS_VERSION=$(redis-server --version | sed -E 's/.*v=([^ ]+).*/\1/')
KBDUMP_VERSION=$("$KBDUMP" --version 2>/dev/null || echo kbdump)
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)

export START LOAD_BEFORE LOAD_AFTER CPU_MODEL CORES MEM_TOTAL REDIS_VERSION KBDUMP_VERSION COMMIT \
  PATTERNS SMALL RUNS BIG_KEYS BIG_MEM SMALL_KEYS SMALL_MEM BIG_ARCHIVE BIG_RDB ONE_KB

python3 - "$RESULTS" > "$WORK/report.md" <<'PY'
import os, statistics, sys
from collections import defaultdict

env = os.environ
rows = defaultdict(list)
for line in open(sys.argv[1]):
    size, bench, tool, wall, rss, ccpu, scpu = line.rstrip("\n").split("\t")
    rows[(int(size), bench, tool)].append((float(wall), int(rss), float(ccpu), float(scpu)))

big, small = int(env["PATTERNS"]), int(env["SMALL"])
med = lambda xs: statistics.median(xs)

def stat(size, bench, tool):
    rs = rows.get((size, bench, tool))
    if not rs:
        return None
    return dict(
        wall=med([r[0] for r in rs]), walls=[r[0] for r in rs], rss=max(r[1] for r in rs),
        ccpu=med([r[2] for r in rs]), scpu=med([r[3] for r in rs]), n=len(rs))

def mib(kib): return f"{kib / 1024:.0f} MiB"
def fmt_walls(ws): return " / ".join(f"{w:.2f}" for w in ws)

ref_rdb = stat(big, "export-all", "ref")
pairs = [
    ("export --method rdb, every key", stat(big, "export-rdb", "kbdump"), ref_rdb, "redis-cli --rdb", "≤ 1.2x"),
    (f"export --method rdb, one kb_id of 4 ({env['ONE_KB']})", stat(big, "export-rdb-one", "kbdump"), ref_rdb, "redis-cli --rdb", "≤ 1.2x"),
    ("export --method scan, all kb_ids", stat(big, "export-all", "kbdump"), ref_rdb, "redis-cli --rdb", "≤ 1.5x"),
    (f"export --method scan, one kb_id of 4 ({env['ONE_KB']})", stat(big, "export-one", "kbdump"), ref_rdb, "redis-cli --rdb", "well under 0.5x"),
    ("restore into an empty server", stat(big, "restore", "kbdump"), stat(big, "restore", "ref"),
     "redis-cli --pipe (same RESTOREs)", "≤ 1.3x"),
]
out = []
p = out.append
p(f"Run {env['START']} at commit `{env['COMMIT']}` ({env['KBDUMP_VERSION']}), Redis {env['REDIS_VERSION']}.")
p("")
p(f"- Machine: {env['CORES']} cores, {env['CPU_MODEL']}, {env['MEM_TOTAL']} GiB RAM; "
  f"load average before/after: {env['LOAD_BEFORE']} / {env['LOAD_AFTER']}.")
p(f"- Dataset: {big:,} patterns in 4 kb_ids, {int(env['BIG_KEYS']):,} keys, "
  f"{int(env['BIG_MEM']) / 2**20:.0f} MiB used_memory; archive {int(env['BIG_ARCHIVE']) / 2**20:.0f} MiB, "
  f"RDB {int(env['BIG_RDB']) / 2**20:.0f} MiB.")
p(f"- {env['RUNS']} runs per side, alternating which side goes first; medians. "
  "CPU = user + sys seconds of the client process and of the server (its fork included).")
p("")
p("| benchmark | kbdump wall s | reference | ref wall s | ratio | goal | kbdump CPU s | server CPU s (kbdump / ref) | kbdump max RSS |")
p("|---|---:|---|---:|---:|---|---:|---:|---:|")
for name, k, r, rname, goal in pairs:
    if not k or not r:
        continue
    ratio = k["wall"] / r["wall"]
    p(f"| {name} | {k['wall']:.2f} | {rname} | {r['wall']:.2f} | **{ratio:.2f}x** | {goal} | "
      f"{k['ccpu']:.2f} | {k['scpu']:.2f} / {r['scpu']:.2f} | {mib(k['rss'])} |")
p("")
rdb_bytes = int(env["BIG_RDB"])
if rdb_bytes:
    p(f"Offline read of the {rdb_bytes / 1e6:.0f} MB dump.rdb (goal ≥ 300 MB/s on one core):")
    p("")
    p("| benchmark | wall s | MB/s of file | CPU s | max RSS |")
    p("|---|---:|---:|---:|---:|")
    for bench, name in (("rdb-ls", "kbdump ls dump.rdb"), ("rdb-export", "kbdump export --from dump.rdb")):
        k = stat(big, bench, "kbdump")
        if k:
            p(f"| {name} | {k['wall']:.2f} | **{rdb_bytes / 1e6 / k['wall']:.0f}** | {k['ccpu']:.2f} | {mib(k['rss'])} |")
    p("")
p("Individual wall times (s), in run order:")
p("")
for (size, bench, tool), rs in sorted(rows.items(), key=lambda kv: (-kv[0][0], kv[0][1], kv[0][2])):
    if size == big:
        p(f"- {bench} / {tool}: {fmt_walls([r[0] for r in rs])}")
p("")
p("Peak memory (max RSS) of kbdump at two dataset sizes:")
p("")
p("| patterns | keys | export --method rdb | export --method scan | restore all |")
p("|---:|---:|---:|---:|---:|")
for size, keys in ((small, env["SMALL_KEYS"]), (big, env["BIG_KEYS"])):
    d = stat(size, "export-rdb", "kbdump")
    e, r = stat(size, "export-all", "kbdump"), stat(size, "restore", "kbdump")
    cell = lambda x: mib(x['rss']) if x else '-'
    p(f"| {size:,} | {int(keys):,} | {cell(d)} | {cell(e)} | {cell(r)} |")
print("\n".join(out))
PY

echo
cat "$WORK/report.md"

if [[ $WRITE_DOC -eq 1 ]]; then
  DOC="$ROOT/docs/BENCHMARKS.md"
  [[ -f $DOC ]] || printf '# Benchmarks\n\n<!-- bench:begin -->\n<!-- bench:end -->\n' > "$DOC"
  grep -q '<!-- bench:begin -->' "$DOC" || die "$DOC has no <!-- bench:begin --> marker"
  python3 - "$DOC" "$WORK/report.md" <<'PY'
import sys
doc, report = sys.argv[1], open(sys.argv[2]).read().rstrip("\n")
text = open(doc).read()
head, rest = text.split("<!-- bench:begin -->", 1)
_, tail = rest.split("<!-- bench:end -->", 1)
open(doc, "w").write(f"{head}<!-- bench:begin -->\n{report}\n<!-- bench:end -->{tail}")
PY
  log "results written to docs/BENCHMARKS.md"
fi
