#!/usr/bin/env bash
# Reproduces the rows of BENCHMARKS.md on this machine, each against a reference measured
# in the same run. Loopback only; every process started here is stopped by its PID.
#
#   scripts/bench.sh [dns|grpc|import|offline|disk|scale|all]
#
# Sizes: N_DNS (default 1000000), N_GRPC (1000000), N_IMPORT (10000000), N_SCALE
# (100000000) against N_BASE (1000000). Work files go to
# $BENCH_DIR (default /var/tmp/idnode-bench). Installs knot and dnsperf from Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/idnode-target}"
W="${BENCH_DIR:-/var/tmp/idnode-bench}"
N_DNS="${N_DNS:-1000000}"
N_GRPC="${N_GRPC:-1000000}"
N_IMPORT="${N_IMPORT:-10000000}"
DURATION="${DURATION:-20}"
mkdir -p "$W"
./scripts/setup
cargo build --release --locked --bin idnode 2>&1 | tail -1
B="$CARGO_TARGET_DIR/release/idnode"
. scripts/lib.sh

# One load generator on one address: no per-client request rate. The DNS and gRPC rows
# compare with servers that hold every answer in memory (Knot's zone, the trivial server's
# map): there the node's record cache is sized to hold the 1M records too.
printf '[limits]\nclient_requests_per_second = 0\n' >"$W/node.toml"
printf '[limits]\nclient_requests_per_second = 0\n[store]\nrecord_cache_mb = 512\n' >"$W/node-cache.toml"

serve() { # data dir, log; prints nothing; sets SERVE_PID
  "$B" serve --config "${CONFIG:-$W/node.toml}" --data-dir "$1" --grpc-addr 127.0.0.1:7400 --dns-addr 127.0.0.1:5400 --http-addr off \
    --no-seed --block-cache-mb "${CACHE_MB:-1024}" --log-level warn >"$2" 2>&1 &
  SERVE_PID=$!; PIDS+=("$SERVE_PID")
  wait_for "$2" "grpc://"
}

stop() { kill "$1"; wait "$1" 2>/dev/null || true; }

row() { printf '| %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4"; }

# Queries per second of one dnsperf run against 127.0.0.1:PORT (the rest: dnsperf's
# arguments); fails, with dnsperf's report, when it lost queries or saw response codes other
# than NOERROR and NXDOMAIN: a server that refuses or fails answers fast and measures nothing.
dnsperf_qps() { # port, dnsperf arguments
  local port=$1 out lost codes qps; shift
  out=$(dnsperf -s 127.0.0.1 -p "$port" "$@" 2>&1) || { echo "dnsperf against port $port failed:" >&2; echo "$out" >&2; return 1; }
  lost=$(awk '/Queries lost:/ {print $3}' <<<"$out")
  codes=$(awk -F'Response codes: *' 'NF > 1 {print $2}' <<<"$out")
  qps=$(awk '/Queries per second:/ {print $4}' <<<"$out")
  if [ "$lost" != 0 ] || [ -z "$codes" ] || [ -z "$qps" ] \
    || tr ',' '\n' <<<"$codes" | awk 'NF && $1 != "NOERROR" && $1 != "NXDOMAIN" {bad = 1} END {exit !bad}'; then
    echo "dnsperf against port $port: lost queries (${lost:-?}) or response codes other than NOERROR/NXDOMAIN (${codes:-none}):" >&2
    echo "$out" >&2
    return 1
  fi
  echo "$qps"
}

# The TXT answer of one name at 127.0.0.1:PORT, records sorted (a server may order an RRset
# as it likes); fails unless the answer is NOERROR with at least one record.
txt_answer() { # port, name
  local out
  out=$(dig @127.0.0.1 -p "$1" +norec +time=2 +tries=1 "$2" TXT 2>&1) || true
  if ! grep -q 'status: NOERROR' <<<"$out" || grep -q 'ANSWER: 0,' <<<"$out"; then
    echo "port $1 does not answer $2 TXT with NOERROR and a record:" >&2; echo "$out" >&2; return 1
  fi
  dig @127.0.0.1 -p "$1" +norec +short "$2" TXT | sort
}

dns() {
  command -v knotd >/dev/null && command -v dnsperf >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends knot dnsperf >/dev/null; }
  local d="$W/dns-$N_DNS"
  # Regenerated when the binary is newer than the zone: its text follows the node's answers.
  if [ ! -s "$d.jsonl" ] || [ ! -s "$d.zone" ] || [ "$B" -nt "$d.zone" ]; then
    "$B" gen --count "$N_DNS" --out "$d.jsonl" --zone-file "$d.zone" --dnsperf-queries "$d.queries"
  fi
  rm -rf "$d.node" && "$B" import --offline --create --data-dir "$d.node" "$d.jsonl" >/dev/null
  # Knot DNS serving the same names and TXT texts.
  mkdir -p "$W/knot"
  cat >"$W/knot/knot.conf" <<EOF
server:
    listen: 127.0.0.1@5401
    rundir: "$W/knot"
    udp-workers: 2
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$W/knot"
zone:
  - domain: id.example.
    file: "$d.zone"
    journal-content: none
    zonefile-load: whole
log:
  - target: stderr
    any: warning
EOF
  knotd -c "$W/knot/knot.conf" 2>"$W/knot/err.log" & local kp=$!; PIDS+=("$kp")
  local soa=""
  for _ in $(seq 1 600); do
    soa=$(dig @127.0.0.1 -p 5401 +short SOA id.example. 2>/dev/null || true)
    [[ "$soa" == *hostmaster* ]] && break
    kill -0 "$kp" 2>/dev/null || break # knotd exited: no use waiting
    sleep 0.5
  done
  if [[ "$soa" != *hostmaster* ]]; then
    echo "bench.sh dns: Knot never served the SOA of id.example. on 127.0.0.1:5401 (zone $d.zone not loaded?); its log, $W/knot/err.log:" >&2
    tail -n 20 "$W/knot/err.log" >&2
    exit 1
  fi
  CONFIG="$W/node-cache.toml" serve "$d.node" "$W/dns-node.log"
  # Before measuring: Knot answers a known identifier NOERROR, with the node's TXT texts.
  local first ref node
  first=$(head -n 1 "$d.queries" | cut -d' ' -f1)
  ref=$(txt_answer 5401 "$first") || { echo "bench.sh dns: the reference does not serve the generated zone" >&2; exit 1; }
  node=$(txt_answer 5400 "$first") || { echo "bench.sh dns: the node does not serve the imported data" >&2; exit 1; }
  if [ "$ref" != "$node" ]; then
    printf 'bench.sh dns: Knot and the node answer %s TXT differently\nKnot:\n%s\nnode:\n%s\n' "$first" "$ref" "$node" >&2
    exit 1
  fi
  local knot idn q=(-d "$d.queries" -c 4 -T 1 -q 200)
  # The same warm-up for both (one pass over the names: Knot has its zone in memory from
  # the start, idnode's block cache fills on first reads), then the measured runs.
  dnsperf -s 127.0.0.1 -p 5401 "${q[@]}" -l 10 >/dev/null 2>&1
  dnsperf -s 127.0.0.1 -p 5400 "${q[@]}" -l 10 >/dev/null 2>&1
  knot=$(dnsperf_qps 5401 "${q[@]}" -l "$DURATION") || { echo "bench.sh dns: the Knot run is not a measurement" >&2; exit 1; }
  idn=$(dnsperf_qps 5400 "${q[@]}" -l "$DURATION") || { echo "bench.sh dns: the idnode run is not a measurement" >&2; exit 1; }
  stop "$SERVE_PID"; stop "$kp"
  row "DNS resolve, $N_DNS identifiers, dnsperf UDP (-c 4 -T 1 -q 200, ${DURATION}s)" "Knot 3.2: $knot qps" "idnode (512 MiB record cache): $idn qps" "$(echo "$idn $knot" | awk '{printf "%.2f", $1/$2}')"
}

grpc() {
  local d="$W/grpc-$N_GRPC"
  [ -s "$d.jsonl" ] || "$B" gen --count "$N_GRPC" --out "$d.jsonl"
  rm -rf "$d.node" && "$B" import --offline --create --data-dir "$d.node" "$d.jsonl" >/dev/null
  "$B" bench-reference grpc --addr 127.0.0.1:7401 --gen-count "$N_GRPC" >"$W/trivial.log" 2>&1 & local tp=$!; PIDS+=("$tp")
  wait_for "$W/trivial.log" "trivial Resolver"
  CONFIG="$W/node-cache.toml" serve "$d.node" "$W/grpc-node.log"
  local args=(--gen-count "$N_GRPC" --duration "$DURATION" --concurrency 64 --connections 4)
  # The same warm-up for both (one pass over every key, then the measured settings), then
  # the measured runs.
  for port in 7401 7400; do
    "$B" bench --node "http://127.0.0.1:$port" --gen-count "$N_GRPC" --count "$N_GRPC" --duration 300 --distribution sequential \
      --concurrency 64 --connections 4 >/dev/null
    "$B" bench --node "http://127.0.0.1:$port" "${args[@]}" >/dev/null
  done
  "$B" bench --node http://127.0.0.1:7401 "${args[@]}" --label trivial --report "$W/trivial.json" >/dev/null
  "$B" bench --node http://127.0.0.1:7400 "${args[@]}" --label idnode --report "$W/idnode-grpc.json" >/dev/null
  stop "$SERVE_PID"; stop "$tp"
  "$B" bench-compare "$W/trivial.json" "$W/idnode-grpc.json"
  local t i
  t=$(python3 -c "import json;print(round(json.load(open('$W/trivial.json'))['throughput']))")
  i=$(python3 -c "import json;print(round(json.load(open('$W/idnode-grpc.json'))['throughput']))")
  row "gRPC Resolve, $N_GRPC identifiers, idnode bench (64 in flight, 4 connections)" "trivial tonic server: $t rps" "idnode (512 MiB record cache): $i rps" "$(echo "$i $t" | awk '{printf "%.2f", $1/$2}')"
}

import() {
  local d="$W/import-$N_IMPORT"
  [ -s "$d.jsonl" ] || "$B" gen --count "$N_IMPORT" --out "$d.jsonl"
  rm -rf "$d.raw" && local raw
  raw=$("$B" bench-reference rocks-batch --input "$d.jsonl" --dir "$d.raw" | python3 -c "import json,sys;print(round(json.load(sys.stdin)['records_per_second']))")
  rm -rf "$d.raw" "$d.online"
  serve "$d.online" "$W/import-node.log"
  local online
  online=$("$B" import "$d.jsonl" --node http://127.0.0.1:7400 --token-file "$d.online/admin.token" --json | python3 -c "import json,sys;print(round(json.load(sys.stdin)['records_per_second']))")
  stop "$SERVE_PID"
  row "online import (BatchRegister), $N_IMPORT records" "raw RocksDB WriteBatch: $raw/s" "idnode: $online/s" "$(echo "$online $raw" | awk '{printf "%.2f", $1/$2}')"
}

offline() {
  local d="$W/import-$N_IMPORT"
  [ -s "$d.jsonl" ] || "$B" gen --count "$N_IMPORT" --out "$d.jsonl"
  rm -rf "$d.sst" && local raw
  raw=$("$B" bench-reference rocks-sst --input "$d.jsonl" --dir "$d.sst" | python3 -c "import json,sys;print(round(json.load(sys.stdin)['records_per_second']))")
  rm -rf "$d.sst" "$d.offline"
  local off
  off=$("$B" import --offline --create --data-dir "$d.offline" "$d.jsonl" --json | python3 -c "import json,sys;print(round(json.load(sys.stdin)['records_per_second']))")
  row "offline import, $N_IMPORT records, input unsorted (sort included)" "raw SstFileWriter + ingest, presorted: $raw/s" "idnode: $off/s" "$(echo "$off $raw" | awk '{printf "%.2f", $1/$2}')"
}

disk() {
  local d="$W/import-$N_IMPORT"
  [ -d "$d.offline" ] || offline >/dev/null
  local logical bytes
  logical=$(python3 - "$d.jsonl" <<'EOF'
import json, sys
total = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    total += len(r["identifier"].encode()) + sum(len(v["type"].encode()) + len(v["data"].encode()) + 4 for v in r["values"])
print(total)
EOF
)
  bytes=$(du -sb "$d.offline/db" | cut -f1)
  row "bytes on disk per record, $N_IMPORT records (offline import)" "logical $(echo "$logical $N_IMPORT" | awk '{printf "%.0f", $1/$2}') B/record" "on disk $(echo "$bytes $N_IMPORT" | awk '{printf "%.0f", $1/$2}') B/record" "$(echo "$bytes $logical" | awk '{printf "%.2f", $1/$2}')"
}

scale() {
  # Resolve throughput and RSS at N_SCALE records against the same node at N_BASE, both
  # with a 1 GiB block cache and the default record cache (64 MiB). Data sets are piped from gen into the offline import.
  # Measured twice at N_SCALE: with the table files in the OS page cache (read once before
  # the node starts, as on a node that has served for a while) and with them evicted first
  # (every block-cache miss reads the disk).
  local big="${N_SCALE:-100000000}" base="${N_BASE:-1000000}" n d tput=() rss=() cold
  for n in "$base" "$big"; do
    d="$W/scale-$n.node"
    if [ ! -f "$d/imported" ]; then
      rm -rf "$d"
      local t0=$SECONDS
      "$B" gen --count "$n" --out - 2>/dev/null | "$B" import --offline --create --data-dir "$d" --failures "$W/scale-$n.failures.jsonl" - --json >"$W/scale-$n.import.json"
      echo "imported $n records in $((SECONDS - t0)) s: $(cat "$W/scale-$n.import.json")" >&2
      touch "$d/imported"
    fi
    cat "$d"/db/*.sst >/dev/null
    CACHE_MB=1024 serve "$d" "$W/scale-node.log"
    # Warm-up, then the measured run with the node's RSS sampled every second.
    "$B" bench --node http://127.0.0.1:7400 --gen-count "$n" --duration 5 --concurrency 64 --connections 4 >/dev/null
    local peak=0 r
    ( while kill -0 "$SERVE_PID" 2>/dev/null; do
        awk '/VmRSS/ {print int($2/1024)}' "/proc/$SERVE_PID/status"; sleep 1; done ) >"$W/scale-$n.rss" &
    local sampler=$!
    "$B" bench --node http://127.0.0.1:7400 --gen-count "$n" --duration "$DURATION" --concurrency 64 \
      --connections 4 --label "scale-$n" --report "$W/scale-$n.json" >/dev/null
    kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
    for r in $(cat "$W/scale-$n.rss"); do [ "$r" -gt "$peak" ] && peak=$r; done
    stop "$SERVE_PID"
    tput+=("$(python3 -c "import json;print(round(json.load(open('$W/scale-$n.json'))['throughput']))")")
    rss+=("$peak")
    echo "$n records: $(du -sb "$d/db" | cut -f1) bytes on disk" >&2
  done
  # Cold: the same big store with its files dropped from the page cache (posix_fadvise).
  python3 -c "
import glob, os, sys
for f in glob.glob(sys.argv[1] + '/*.sst'):
    fd = os.open(f, os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)" "$d/db"
  CACHE_MB=1024 serve "$d" "$W/scale-node.log"
  "$B" bench --node http://127.0.0.1:7400 --gen-count "$big" --duration "$DURATION" --concurrency 64 \
    --connections 4 --label "scale-$big-cold" --report "$W/scale-$big-cold.json" >/dev/null
  stop "$SERVE_PID"
  cold=$(python3 -c "import json;print(round(json.load(open('$W/scale-$big-cold.json'))['throughput']))")
  row "gRPC resolve at $big records, uniform keys (1 GiB block cache, files in the page cache)" "same node at $base: ${tput[0]} rps" "${tput[1]} rps" "$(echo "${tput[1]} ${tput[0]}" | awk '{printf "%.2f", $1/$2}')"
  row "the same at $big records, files evicted from the page cache at start" "same node at $base: ${tput[0]} rps" "$cold rps" "$(echo "$cold ${tput[0]}" | awk '{printf "%.2f", $1/$2}')"
  row "peak RSS under that load at $big records" "1 GiB block cache + 64 MiB record cache + 300 MiB = 1388 MiB (at $base: ${rss[0]} MiB)" "${rss[1]} MiB" "$(echo "${rss[1]}" | awk '{printf "%.2f", $1/1388}')"
}

echo "| measurement | reference | idnode | ratio |"
echo "| --- | --- | --- | --- |"
case "${1:-all}" in
  dns) dns ;; grpc) grpc ;; import) import ;; offline) offline ;; disk) disk ;; scale) scale ;;
  all) dns; grpc; import; offline; disk; scale ;;
  *) echo "unknown row $1" >&2; exit 2 ;;
esac
