#!/usr/bin/env python3
"""Write DUMP payload fixtures: one JSON file per server flavour.

Run through scripts/gen-dump-fixtures.sh, which provides the server binaries
and a venv with redis-py. Usage:

    gen_dump_fixtures.py OUT_DIR LABEL=BINARY [LABEL=BINARY ...]

For every server: start it on a free loopback port in a temp dir, create keys
that provoke every encoding the server writes, then record per key the DUMP
payload (hex), OBJECT ENCODING, and the value as ordinary commands return it
(GET / LRANGE / SMEMBERS / ZRANGE WITHSCORES / HGETALL + HPEXPIRETIME /
XRANGE + XINFO STREAM/GROUPS/CONSUMERS + XPENDING). Byte strings are written
as JSON strings when they are UTF-8, else as {"base64": "..."}.
"""
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import redis


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary):
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="kbdump-fixtures-")
        self.port = free_port()
        self.proc = None

    def __enter__(self):
        conf = os.path.join(self.dir, "server.conf")
        with open(conf, "w") as f:
            f.write('port %d\nbind 127.0.0.1\nsave ""\nappendonly no\n' % self.port)
            f.write("dir %s\nlogfile %s\n" % (self.dir, os.path.join(self.dir, "server.log")))
        self.proc = subprocess.Popen([self.binary, conf], stdout=subprocess.DEVNULL)
        self.client = redis.Redis(host="127.0.0.1", port=self.port, protocol=2)
        # A second client without redis-py's reply parsing, for the views:
        # its parsers fold repeated fields and reorder things.
        self.raw = redis.Redis(host="127.0.0.1", port=self.port, protocol=2)
        self.raw.response_callbacks.clear()
        for _ in range(100):
            try:
                self.client.ping()
                return self
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("%s did not start" % self.binary)

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def has_command(c, *probe):
    try:
        c.execute_command(*probe)
    except redis.ResponseError as e:
        return "unknown command" not in str(e).lower()
    return True


def build_keys(c, product, version):
    """Create the keys; returns their names in creation order."""
    c.flushall()
    keys = []

    def key(k):
        keys.append(k)
        return k

    # Strings: int forms, embstr/raw, LZF, binary, empty.
    c.set(key("str:int8"), "100")
    c.set(key("str:int16"), "30000")
    c.set(key("str:int32"), "2000000000")
    c.set(key("str:int64"), "9000000000000000000")
    c.set(key("str:negint"), "-100")
    c.set(key("str:noncanonical-int"), "007")
    c.set(key("str:embstr"), "hello world")
    c.set(key("str:raw"), bytes((i * 7919 + 13) % 251 for i in range(100)))
    c.set(key("str:lzf"), b"abcdefgh" * 128)
    c.set(key("str:ttl"), "v", px=3600000)
    c.set(key("str:empty"), "")
    c.set(key(b"bin:\x00\xff\xfe key"), bytes(range(256)))
    c.set(key("kb:emotives:1"), '[{"joy":0.4,"utility":-1.2}]')
    c.set(key("kb:metadata:1"), '{"tags": ["a", "b"]}')
    c.set(key("str:unicode"), "grüße ✓")

    # Lists.
    c.rpush(key("list:small"), "a", "b", 1, 2, -7, 300, 70000)
    c.rpush(key("list:large"), *["element-%d" % i for i in range(2000)])
    c.rpush(key("list:bigelem"), b"x" * 20000, "tail")
    c.rpush(key("list:ints"), *[i * 1000003 for i in range(-5, 200)])
    c.rpush(key("list:binary"), b"\x00", b"\xff\xfe", b"", "plain", -(2**63), 2**63 - 1)
    c.config_set("list-compress-depth", 1)
    c.rpush(key("list:compressed"), *[("compressible-%d-" % i) * 8 for i in range(600)])
    c.config_set("list-compress-depth", 0)

    # Sets.
    c.sadd(key("set:intset"), 1, 2, 3, -40000, 5000000000)
    c.sadd(key("set:intset16"), 1, 2, 3)
    c.sadd(key("set:small"), "apple", "banana", "cherry")
    c.sadd(key("set:binary"), b"\x00\x01", b"\xff", "text")
    c.sadd(key("set:large"), *["member-%d" % i for i in range(300)])
    c.sadd(key("set:manyints"), *range(1000))

    # Sorted sets.
    c.zadd(key("zset:small"), {"a": 1, "b": 2.5, "c": -3, "d": float("inf")})
    c.zadd(key("zset:odd"), {"neg-inf": float("-inf"), "tenth": 0.1, "tiny": 1e-300,
                             "huge": 1.7976931348623157e308, "neg": -123456.789, b"\xff": 0})
    c.zadd(key("zset:large"), {"m-%d" % i: i / 3.0 for i in range(300)})
    c.zadd(key("zset:longmember"), {"y" * 100: 1.5, "z": 2})

    # Hashes.
    c.hset(key("hash:small"), mapping={"f1": "v1", "f2": "2", "f3": "300000"})
    c.hset(key("hash:large"), mapping={"field-%d" % i: "value-%d" % i for i in range(600)})
    c.hset(key("hash:longval"), mapping={"f": "y" * 100})
    c.hset(key("hash:binary"), mapping={b"\x00f": b"\xff\xfe", "empty": "", "int": -5})

    if has_command(c, "HEXPIRE", "no:such:key", 10, "FIELDS", 1, "f"):
        c.hset(key("hash:ttl:small"), mapping={"a": "1", "b": "2", "c": "3"})
        c.execute_command("HEXPIRE", "hash:ttl:small", 3600, "FIELDS", 1, "a")
        c.hset(key("hash:ttl:large"), mapping={"field-%d" % i: "value-%d" % i for i in range(600)})
        c.execute_command("HEXPIRE", "hash:ttl:large", 3600, "FIELDS", 2, "field-1", "field-2")
        c.hset(key("hash:ttl:all"), mapping={"x": "1", "y": b"\xff"})
        c.execute_command("HPEXPIREAT", "hash:ttl:all", int(time.time() * 1000) + 86400000,
                          "FIELDS", 2, "x", "y")

    # Streams.
    for i in range(5):
        c.xadd(key("stream:simple") if i == 0 else "stream:simple",
               {"temp": str(20 + i), "hum": str(50 + i)})
    c.xadd("stream:simple", {"other": "field"})
    for i in range(5):
        c.xadd(key("stream:groups") if i == 0 else "stream:groups", {"n": str(i)})
    c.xgroup_create("stream:groups", "g1", id="0")
    c.xreadgroup("g1", "alice", {"stream:groups": ">"}, count=3)
    c.xgroup_create("stream:groups", "g2", id="$")
    c.xadd("stream:groups", {"n": "del-me"}, id="999999999999999-1")
    c.xdel("stream:groups", "999999999999999-1")
    c.xgroup_create(key("stream:empty"), "g", id="$", mkstream=True)

    # Many entries over several nodes, mixed field sets, binary fields,
    # several consumers, acks, a re-delivery and a deleted pending entry.
    ids = []
    for i in range(250):
        fields = {"a": i, "b": "x%d" % i} if i % 7 else {b"\x00bin": b"\xff", "c": i}
        ids.append(c.xadd(key("stream:big") if i == 0 else "stream:big", fields,
                          id="%d-%d" % (1700000000000 + i // 3, i % 3)))
    c.xgroup_create("stream:big", "workers", id="0")
    c.xreadgroup("workers", "w1", {"stream:big": ">"}, count=10)
    c.xreadgroup("workers", "w2", {"stream:big": ">"}, count=5)
    c.xack("stream:big", "workers", ids[0], ids[1])
    c.xclaim("stream:big", "workers", "w2", 0, [ids[2]])
    c.xdel("stream:big", ids[3], ids[100])
    c.execute_command("XGROUP", "CREATECONSUMER", "stream:big", "workers", "idle-one")
    c.xgroup_create("stream:big", b"g\xffbin", id=ids[50])

    c.xadd(key("stream:trimmed"), {"f": "v"}, id="5-1")
    c.xadd("stream:trimmed", {"f": "v"}, id="6-1")
    c.xtrim("stream:trimmed", maxlen=0)
    return keys


def enc(b):
    if isinstance(b, int):
        return b
    if isinstance(b, str):
        return b
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(b).decode()}


def pairs(flat):
    return {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}


def text(v):
    return v.decode() if isinstance(v, bytes) else v


def stream_view(c, k):
    # Raw XRANGE: redis-py's parsed form folds fields into a dict.
    raw = c.execute_command("XRANGE", k, "-", "+")
    entries = [[i.decode(), [[enc(fv[j]), enc(fv[j + 1])] for j in range(0, len(fv), 2)]]
               for i, fv in raw]
    info = pairs(c.execute_command("XINFO", "STREAM", k))
    view = {
        "entries": entries,
        "length": info["length"],
        "last_id": text(info["last-generated-id"]),
        "first_id": text(info.get("recorded-first-entry-id")),
        "max_deleted_id": text(info.get("max-deleted-entry-id")),
        "entries_added": info.get("entries-added"),
        "groups": [],
    }
    for g in c.execute_command("XINFO", "GROUPS", k):
        g = pairs(g)
        name = g["name"]
        pel = c.execute_command("XPENDING", k, name, "-", "+", 100000)
        consumers = [pairs(x) for x in c.execute_command("XINFO", "CONSUMERS", k, name)]
        view["groups"].append({
            "name": enc(name),
            "last_delivered": text(g["last-delivered-id"]),
            "entries_read": g.get("entries-read"),
            "has_entries_read": "entries-read" in g,
            "pel": [{"id": p[0].decode(), "consumer": enc(p[1]), "idle_ms": p[2],
                     "delivery_count": p[3]} for p in pel],
            "consumers": [{"name": enc(x["name"]), "pending": x["pending"], "idle_ms": x["idle"],
                           "inactive_ms": x.get("inactive")} for x in consumers],
        })
    return view


def hash_view(c, k, with_ttl):
    items = c.execute_command("HGETALL", k)
    fields = [items[i] for i in range(0, len(items), 2)]
    ttls = [-1] * len(fields)
    if with_ttl:
        ttls = c.execute_command("HPEXPIRETIME", k, "FIELDS", len(fields), *fields)
    return [[enc(items[2 * i]), enc(items[2 * i + 1]), None if ttls[i] < 0 else ttls[i]]
            for i in range(len(fields))]


def logical(c, k, with_ttl):
    t = c.execute_command("TYPE", k).decode()
    if t == "string":
        v = enc(c.execute_command("GET", k))
    elif t == "list":
        v = [enc(x) for x in c.execute_command("LRANGE", k, 0, -1)]
    elif t == "set":
        v = [enc(x) for x in sorted(c.execute_command("SMEMBERS", k))]
    elif t == "zset":
        # Scores exactly as the server prints them (no float round trip).
        raw = c.execute_command("ZRANGE", k, 0, -1, "WITHSCORES")
        v = [[enc(raw[i]), raw[i + 1].decode()] for i in range(0, len(raw), 2)]
    elif t == "hash":
        v = hash_view(c, k, with_ttl)
    elif t == "stream":
        v = stream_view(c, k)
    else:
        raise RuntimeError("unexpected type %s" % t)
    return {"type": t, "value": v}


def server_info(c):
    info = c.info("server")
    product = "valkey" if "valkey_version" in info else "redis"
    return product, info.get("valkey_version") or info["redis_version"]


def run(label, binary):
    with Server(binary) as s:
        c = s.client
        product, version = server_info(c)
        keys = build_keys(c, product, version)
        with_ttl = has_command(c, "HPEXPIRETIME", "no:such:key", "FIELDS", 1, "f")
        out = []
        for k in keys:
            payload = s.raw.execute_command("DUMP", k)
            sec, usec = (int(x) for x in s.raw.execute_command("TIME"))
            out.append({
                "key": enc(k.encode() if isinstance(k, str) else k),
                "encoding": s.raw.execute_command("OBJECT", "ENCODING", k).decode(),
                "payload_hex": payload.hex(),
                "server_time_ms": sec * 1000 + usec // 1000,
                "expected": logical(s.raw, k, with_ttl),
            })
        return {"label": label, "product": product, "version": version,
                "rdb_version": int.from_bytes(bytes.fromhex(out[0]["payload_hex"])[-10:-8], "little"),
                "keys": out}


def main():
    out_dir = sys.argv[1]
    for arg in sys.argv[2:]:
        label, binary = arg.split("=", 1)
        doc = run(label, binary)
        path = os.path.join(out_dir, label + ".json")
        with open(path, "w") as f:
            json.dump(doc, f, indent=1, ensure_ascii=False)
            f.write("\n")
        print("%s: %s %s, rdb %d, %d keys -> %s" % (label, doc["product"], doc["version"],
                                                   doc["rdb_version"], len(doc["keys"]), path))


if __name__ == "__main__":
    main()
