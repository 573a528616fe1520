#!/usr/bin/env bash
# A self-contained tour of kbdump on a throwaway local Redis: seed sample
# KATO data, export one knowledge base, inspect, list and verify the archive,
# lose some emotives, see what is missing and put it back.
#
# Usage: scripts/demo.sh   (installs redis-server/redis-cli through
#                           scripts/provision.sh when they are missing)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d)"
port=""

cleanup() {
    if [[ -n "$port" ]]; then
        redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_redis() {
    port="$(free_port)"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$work" --daemonize yes --logfile "$work/redis.log" >/dev/null
    for _ in $(seq 50); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "redis-server did not start; see $work/redis.log" >&2
    exit 2
}

# Writes a small KATO-like dataset: two kb_ids with every category.
seed() {
    local kb p i
    for kb in node0_kato node1_kato; do
        for i in $(seq 1 50); do
            p="$(printf '%s-%03d' "$kb" "$i" | sha1sum | cut -c1-40)"
            echo "SET $kb:frequency:$p $((i % 7 + 1))"
            echo "SET $kb:emotives:$p \"[{\\\"joy\\\": 0.$((i % 10)), \\\"utility\\\": -1.$((i % 5))}]\""
            echo "SET $kb:metadata:$p \"{\\\"source\\\": \\\"demo\\\", \\\"n\\\": $i}\""
            echo "SET $kb:entropy:$p 1.5"
            echo "SET $kb:tf_vector:$p \"{\\\"sym$((i % 9))\\\": 0.5}\""
            echo "SADD $kb:symbol_to_patterns:sym$((i % 9)) $p"
            echo "HSET $kb:symbols:freq sym$((i % 9)) $i"
        done
        echo "HSET $kb:affinity:sym1 joy 0.25 utility -0.5"
        echo "SET $kb:global:total_unique_patterns 50"
        echo "SET $kb:prediction:42 \"{}\" PX 600000"
    done
}

main() {
    cd "$root"
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        "$root/scripts/provision.sh" >/dev/null
    fi
    cargo build --quiet --release
    local kbdump="$root/target/release/kbdump"
    export REDIS_URL
    start_redis
    REDIS_URL="redis://127.0.0.1:$port"
    seed | redis-cli -p "$port" >/dev/null
    cd "$work"
    step "$kbdump" kbs
    step "$kbdump" export --kb node0_kato -o node0.kbd
    step "$kbdump" inspect node0.kbd
    step "$kbdump" ls node0.kbd --category affinity --category globals --long
    step "$kbdump" cat node0.kbd --category affinity --category metadata --match '*:metadata:0*'
    step "$kbdump" verify node0.kbd
    if "$kbdump" --help | grep -q '^  restore'; then
        printf '\n# an incident: half of the emotives of node0_kato are evicted\n'
        redis-cli -p "$port" --scan --pattern 'node0_kato:emotives:*' | head -25 |
            xargs redis-cli -p "$port" del >/dev/null
        step "$kbdump" diff node0.kbd --category emotives --values --examples 2 || true
        step "$kbdump" restore node0.kbd --category emotives
        step "$kbdump" diff node0.kbd
    fi
    printf '\ndemo finished; the server and files were temporary.\n'
}

main "$@"
