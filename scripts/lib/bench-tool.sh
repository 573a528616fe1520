# Sourced by the benchmark scripts: builds kbdump and benches/bench_tool.rs
# in release mode and sets KBDUMP and TOOL to their paths. Needs ROOT (the
# project root); exits with a message when bench_tool cannot be built.
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
KBDUMP="$ROOT/target/release/kbdump"
TOOL=$(cd "$ROOT" && cargo bench --no-run --quiet --bench bench_tool --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "bench_tool" and m.get("executable"):
        print(m["executable"])')
if [[ ! -x $TOOL ]]; then
  echo "could not build benches/bench_tool.rs" >&2
  exit 1
fi
