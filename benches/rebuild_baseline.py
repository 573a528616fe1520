#!/usr/bin/env python3
"""Reference rebuild: KATO's `scripts/rehydrate_redis.py` algorithm.

Used twice: by the integration tests as the independent computation that
`kbdump rebuild` must match key for key, and by scripts/bench-rebuild.sh
as the baseline it must beat. The algorithm (what is read, what is
computed, in which order, and what is written) follows KATO's script step
for step; only the transport is swapped so that it needs nothing beyond
the standard library:

- ClickHouse is read over its HTTP interface (FORMAT JSONEachRow), which
  every server version speaks, including Debian's 18.16 that
  clickhouse-connect does not support. Like KATO, all rows of a kb_id are
  loaded into memory before anything is computed.
- Redis is written through a minimal RESP client that pipelines like
  redis-py's `pipeline(transaction=False)` with the same batch sizes. It
  is leaner than redis-py, so the baseline is, if anything, faster than
  KATO's real script.

Usage:
  rebuild_baseline.py --clickhouse http://host:8123/?database=kato \
      --redis redis://host:6379 (--kb-ids a,b | --all) [--batch-size 5000]
"""

import argparse
import base64
import json
import socket
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter
from math import log, log2


# --- transport -------------------------------------------------------------

class ClickHouse:
    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        q = urllib.parse.parse_qs(u.query)
        self.db = q.get("database", ["kato"])[0]
        self.base = f"http://{u.hostname}:{u.port or 8123}/"
        self.headers = {}
        if u.username:
            token = f"{urllib.parse.unquote(u.username)}:{urllib.parse.unquote(u.password or '')}"
            self.headers["Authorization"] = "Basic " + base64.b64encode(token.encode()).decode()

    def rows(self, sql):
        req = urllib.request.Request(self.base, data=sql.encode(), headers=self.headers)
        with urllib.request.urlopen(req) as resp:
            for line in resp:
                yield json.loads(line)

    def ident(self, name):
        return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote(value):
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def encode(arg):
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode("utf-8")
    return repr(arg).encode()  # ints and floats, as redis-py encodes them


class Redis:
    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379))
        self.file = self.sock.makefile("rb")
        if u.password:
            self.execute([["AUTH"] + ([u.username] if u.username else []) + [u.password]])
        db = (u.path or "/").strip("/")
        if db:
            self.execute([["SELECT", db]])

    def execute(self, commands):
        out = []
        for cmd in commands:
            parts = [encode(a) for a in cmd]
            out.append(b"*%d\r\n" % len(parts))
            for p in parts:
                out.append(b"$%d\r\n%s\r\n" % (len(p), p))
        self.sock.sendall(b"".join(out))
        return [self.read() for _ in commands]

    def read(self):
        line = self.file.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.file.read(n + 2)[:-2]
        if kind == b"*":
            return [self.read() for _ in range(int(rest))]
        return rest


class Pipeline:
    def __init__(self, redis):
        self.redis, self.commands = redis, []

    def set(self, key, value):
        self.commands.append(["SET", key, value])

    def hset(self, key, field, value):
        self.commands.append(["HSET", key, field, value])

    def sadd(self, key, *members):
        self.commands.append(["SADD", key, *members])

    def execute(self):
        self.redis.execute(self.commands)
        self.commands = []


# --- KATO's algorithm -------------------------------------------------------

def discover_kb_ids(ch):
    sql = f"SELECT kb_id, count() AS cnt FROM {ch.ident(ch.db)}.patterns_data GROUP BY kb_id ORDER BY cnt DESC FORMAT JSONEachRow"
    return [row["kb_id"] for row in ch.rows(sql)]


def rehydrate_kb_id(kb_id, ch, redis, batch_size):
    sql = (f"SELECT name, pattern_data FROM {ch.ident(ch.db)}.patterns_data "
           f"WHERE kb_id = {quote(kb_id)} FORMAT JSONEachRow")
    patterns = [(r["name"], r["pattern_data"]) for r in ch.rows(sql)]
    pattern_count = len(patterns)
    if pattern_count == 0:
        return {"kb_id": kb_id, "patterns": 0}

    total_symbol_occurrences = 0
    symbol_freq = Counter()
    symbol_pmf = Counter()
    symbol_to_patterns = {}
    for batch_start in range(0, pattern_count, batch_size):
        pipe = Pipeline(redis)
        for pattern_name, pattern_data in patterns[batch_start:batch_start + batch_size]:
            pipe.set(f"{kb_id}:frequency:{pattern_name}", 1)
            all_symbols = [s for event in pattern_data for s in event]
            symbol_counts = Counter(all_symbols)
            total_symbol_occurrences += len(all_symbols)
            for symbol, count in symbol_counts.items():
                symbol_freq[symbol] += count
                if symbol not in symbol_to_patterns:
                    symbol_to_patterns[symbol] = set()
                symbol_to_patterns[symbol].add(pattern_name)
            for symbol in symbol_counts:
                symbol_pmf[symbol] += 1
        pipe.execute()
    unique_symbols = len(symbol_freq)

    symbol_list = list(symbol_freq.keys())
    for batch_start in range(0, len(symbol_list), batch_size):
        pipe = Pipeline(redis)
        for symbol in symbol_list[batch_start:batch_start + batch_size]:
            pipe.hset(f"{kb_id}:symbols:freq", symbol, symbol_freq[symbol])
            pipe.hset(f"{kb_id}:symbols:pmf", symbol, symbol_pmf[symbol])
            if symbol in symbol_to_patterns:
                members = list(symbol_to_patterns[symbol])
                for i in range(0, len(members), 1000):
                    pipe.sadd(f"{kb_id}:symbol_to_patterns:{symbol}", *members[i:i + 1000])
        pipe.execute()

    pipe = Pipeline(redis)
    pipe.set(f"{kb_id}:global:total_unique_patterns", pattern_count)
    pipe.set(f"{kb_id}:global:total_pattern_frequencies", pattern_count)
    pipe.set(f"{kb_id}:global:total_symbols_in_patterns_frequencies", total_symbol_occurrences)
    pipe.execute()

    symbol_probability_cache = {}
    for symbol, pmf_count in symbol_pmf.items():
        symbol_probability_cache[symbol] = pmf_count / pattern_count if pattern_count > 0 else 0.0
    total_symbols = unique_symbols
    metrics_written = 0
    for batch_start in range(0, pattern_count, batch_size):
        pipe = Pipeline(redis)
        for pattern_name, pattern_data in patterns[batch_start:batch_start + batch_size]:
            pattern_symbols = [s for event in pattern_data for s in event]
            pattern_length = len(pattern_symbols)
            if pattern_length == 0:
                continue
            symbol_counts = Counter(pattern_symbols)
            entropy_val = 0.0
            for count in symbol_counts.values():
                if count > 0:
                    p = count / pattern_length
                    entropy_val -= p * log2(p)
            normalized_entropy_val = 0.0
            if total_symbols > 1:
                for count in symbol_counts.values():
                    if count > 0:
                        p = count / pattern_length
                        normalized_entropy_val -= p * log(p, total_symbols)
            global_normalized_entropy_val = 0.0
            if total_symbols > 1:
                for symbol in set(pattern_symbols):
                    prob = symbol_probability_cache.get(symbol, 0)
                    if prob > 0:
                        global_normalized_entropy_val -= prob * log(prob, total_symbols)
            tf_vector = {symbol: count / pattern_length for symbol, count in symbol_counts.items()}
            pipe.set(f"{kb_id}:entropy:{pattern_name}", str(entropy_val))
            pipe.set(f"{kb_id}:normalized_entropy:{pattern_name}", str(normalized_entropy_val))
            pipe.set(f"{kb_id}:global_normalized_entropy:{pattern_name}", str(global_normalized_entropy_val))
            pipe.set(f"{kb_id}:tf_vector:{pattern_name}", json.dumps(tf_vector))
            metrics_written += 1
        pipe.execute()
    return {"kb_id": kb_id, "patterns": pattern_count, "symbols": unique_symbols,
            "metrics": metrics_written}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clickhouse", default="http://127.0.0.1:8123/?database=kato")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379")
    ap.add_argument("--kb-ids")
    ap.add_argument("--all", action="store_true")
    ap.add_argument("--batch-size", type=int, default=5000)
    args = ap.parse_args()
    if not args.kb_ids and not args.all:
        ap.error("give --kb-ids or --all")
    ch, redis = ClickHouse(args.clickhouse), Redis(args.redis)
    kb_ids = discover_kb_ids(ch) if args.all else [k.strip() for k in args.kb_ids.split(",")]
    start = time.perf_counter()
    results = [rehydrate_kb_id(kb, ch, redis, args.batch_size) for kb in kb_ids]
    json.dump({"seconds": time.perf_counter() - start, "kbs": results}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
