#!/usr/bin/env bash
# Benchmark: reading a three-master Redis Cluster, kbdump against the
# reference, in one run.
#
#   scripts/bench-cluster.sh [PATTERNS] [RUNS]
#       (default 250000 patterns in 4 kb_ids, about 1.8M keys; 3 runs)
#
# Starts three redis-servers with cluster-enabled on free loopback ports
# (removed at exit), joins them with `redis-cli --cluster create`, seeds the
# KATO-like dataset of benches/bench_tool.rs on one standalone server and
# copies it onto the cluster with kbdump. Then, per run, in rotating order:
#   - rdb:        kbdump export --method rdb (every master's snapshot at once)
#   - scan:       kbdump export --method scan (the masters' SCANs side by side)
#   - before:     KBDUMP_BEFORE's export --method scan, when it names an
#                 earlier kbdump binary
#   - reference:  redis-cli --rdb of the three masters at once, into files
# and prints median wall times, ratios to the reference, and peak RSS.
# repl-diskless-sync-delay is 0 on every master, for kbdump and redis-cli
# alike (its default of 5 s would dominate every snapshot).
set -euo pipefail
PATTERNS=${1:-250000}
RUNS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d -t kbdump-bench-cluster-XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
log() { echo "bench-cluster: $*" >&2; }

log "building kbdump and bench_tool (release)..."
# shellcheck source=lib/bench-tool.sh
source "$ROOT/scripts/lib/bench-tool.sh"

start() { # PORT [ARGS...]: a private redis-server in its own directory
  local p=$1; shift
  mkdir -p "$WORK/$p"
  redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/$p" \
    --repl-diskless-sync-delay 0 "$@" >"$WORK/$p/log" 2>&1 & PIDS+=($!)
  for _ in $(seq 100); do redis-cli -p "$p" ping >/dev/null 2>&1 && return; sleep 0.1; done
  log "redis-server on port $p did not start"; exit 1
}
MASTERS=()
for _ in 1 2 3; do
  p=$(port); bus=$(port)
  start "$p" --cluster-enabled yes --cluster-config-file "$WORK/$p/nodes.conf" --cluster-port "$bus"
  MASTERS+=("127.0.0.1:$p")
done
redis-cli --cluster create "${MASTERS[@]}" --cluster-yes >"$WORK/create.log" 2>&1
for _ in $(seq 300); do
  redis-cli -p "${MASTERS[0]#*:}" cluster info | grep -q 'cluster_state:ok' && break; sleep 0.1
done
SRC=$(port); start "$SRC"
log "seeding $PATTERNS patterns..."
"$TOOL" seed --patterns "$PATTERNS" | redis-cli -p "$SRC" --pipe >"$WORK/seed.log" 2>&1
CLUSTER="redis+cluster://${MASTERS[0]}"
"$KBDUMP" copy --quiet --from "redis://127.0.0.1:$SRC" --to "$CLUSTER"
KEYS=0
for m in "${MASTERS[@]}"; do KEYS=$((KEYS + $(redis-cli -p "${m#*:}" dbsize))); done
log "$KEYS keys on ${#MASTERS[@]} masters"

declare -A WALL RSS
measure() { # NAME CMD...: wall seconds and peak RSS (KiB) of one run
  local name=$1; shift
  rm -f "$WORK"/out.kbd "$WORK"/*.rdb
  /usr/bin/time -f '%e %M' -o "$WORK/time" "$@" >/dev/null 2>"$WORK/err" \
    || { log "$name failed:"; cat "$WORK/err" >&2; exit 1; }
  read -r wall rss <"$WORK/time"
  WALL[$name]+="$wall "; RSS[$name]+="$rss "
}
# The reference: every master's snapshot into a file by redis-cli, at once.
{
  echo 'set -e; pids=()'
  for m in "${MASTERS[@]}"; do
    echo "redis-cli -p ${m#*:} --rdb $WORK/${m#*:}.rdb >/dev/null 2>&1 & pids+=(\$!)"
  done
  echo 'for pid in "${pids[@]}"; do wait "$pid"; done'
} >"$WORK/reference.sh"
run_one() {
  case $1 in
    rdb) measure rdb "$KBDUMP" export --quiet --redis "$CLUSTER" --method rdb -o "$WORK/out.kbd" ;;
    scan) measure scan "$KBDUMP" export --quiet --redis "$CLUSTER" --method scan -o "$WORK/out.kbd" ;;
    before) measure before "$KBDUMP_BEFORE" export --quiet --redis "$CLUSTER" --method scan -o "$WORK/out.kbd" ;;
    reference) measure reference bash "$WORK/reference.sh" ;;
  esac
}
NAMES=(reference rdb scan)
[[ -n ${KBDUMP_BEFORE:-} ]] && NAMES+=(before)
for run in $(seq "$RUNS"); do
  n=${#NAMES[@]}
  for i in $(seq 0 $((n - 1))); do run_one "${NAMES[$(((i + run) % n))]}"; done
  log "run $run done"
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
REF=$(echo "${WALL[reference]}" | median)
echo "cluster read, $KEYS keys on ${#MASTERS[@]} masters, $RUNS runs, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-10s %10s %8s %12s   %s\n' what median_s ratio peak_rss_MiB "runs (s)"
for name in "${NAMES[@]}"; do
  med=$(echo "${WALL[$name]}" | median)
  rss=$(echo "${RSS[$name]}" | median)
  printf '%-10s %10s %8s %12s   %s\n' "$name" "$med" \
    "$(python3 -c "print(f'{$med/$REF:.2f}x')")" "$((rss / 1024))" "${WALL[$name]}"
done
