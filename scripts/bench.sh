#!/usr/bin/env bash
# Reproduces the rows of BENCHMARKS.md on this machine, each against a reference measured
# in the same run. Loopback only; every process started here is stopped by its PID.
#
#   scripts/bench.sh [dns|grpc|during|import|offline|disk|scale|site|all]
#
# Sizes: N_DNS (default 1000000), N_GRPC (1000000), N_DURING (10000000), N_IMPORT (10000000),
# N_SCALE (100000000) against N_BASE (1000000), N_SINGLE (1000000). DURATION: seconds per
# measured run (20); COLD: seconds of the cold-cache runs (60); RUNS: interleaved runs of the
# import rows (3); SCALE_IMPORT=0: the scale row without its online import. Work files go to
# $BENCH_DIR (default /var/tmp/idnode-bench). Installs knot and dnsperf from Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/idnode-target}"
W="${BENCH_DIR:-/var/tmp/idnode-bench}"
N_DNS="${N_DNS:-1000000}"
N_GRPC="${N_GRPC:-1000000}"
N_IMPORT="${N_IMPORT:-10000000}"
DURATION="${DURATION:-20}"
RUNS="${RUNS:-3}" # interleaved runs of the import rows
mkdir -p "$W"
./scripts/setup
cargo build --release --locked --bin idnode 2>&1 | tail -1
B="$CARGO_TARGET_DIR/release/idnode"
# Every row names the build it measured: the last commit that changed the binary or this
# script ("+": changed since), so rows run in different sessions on one build share a stamp.
MEASURED=(src proto build.rs Cargo.toml Cargo.lock scripts/bench.sh scripts/lib.sh)
COMMIT="$(git log -1 --format=%h -- "${MEASURED[@]}")$(git diff --quiet HEAD -- "${MEASURED[@]}" || echo +)"
. scripts/lib.sh

# Rows run the node's defaults, except no per-client request rate (one load generator is one
# address). A row that sets more says so in its label.
printf '[limits]\nclient_requests_per_second = 0\n' >"$W/node.toml"

# CPU_FILE: the node runs under `counted` and its CPU seconds go to that file when it exits.
serve() { # data dir, log; prints nothing; sets SERVE_PID ($TASKSET: e.g. "taskset -c 0"; PORT: gRPC, 7400; HTTP: off)
  local wrap=()
  [ -n "${CPU_FILE:-}" ] && wrap=(python3 -c "$COUNTED" "$CPU_FILE")
  "${wrap[@]}" ${TASKSET:-} "$B" serve --config "${CONFIG:-$W/node.toml}" --data-dir "$1" --grpc-addr "127.0.0.1:${PORT:-7400}" --dns-addr "127.0.0.1:$((${PORT:-7400} - 2000))" --http-addr "${HTTP:-off}" \
    --no-seed ${CACHE_MB:+--block-cache-mb "$CACHE_MB"} --log-level warn >"$2" 2>&1 &
  SERVE_PID=$!; PIDS+=("$SERVE_PID")
  wait_for "$2" "grpc://"
}

stop() { kill "$1"; wait "$1" 2>/dev/null || true; }

# Runs a command (stdin, stdout and stderr its own; SIGTERM and SIGINT passed on) and, when
# it has exited, writes the CPU seconds it and its descendants used to FILE: what a process
# used until its very end, shutdown and flush included, which /proc no longer shows then.
COUNTED='import resource, signal, subprocess, sys
p = subprocess.Popen(sys.argv[2:])
for s in (signal.SIGTERM, signal.SIGINT):
    signal.signal(s, lambda n, _: p.send_signal(n))
rc = p.wait()
u = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write(f"{u.ru_utime + u.ru_stime:.3f}\n")
sys.exit(rc)'
counted() { python3 -c "$COUNTED" "$@"; } # file, command...

# Microseconds of CPU per record from a `counted` file.
per_record() { awk -v n="$2" '{printf "%.1f", $1 * 1e6 / n}' "$1"; }

row() { printf '| %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4"; }

# The median (min-max) of the numbers given, and the median alone with DIGITS decimals.
spread() { python3 -c 'import statistics,sys;xs=[float(x) for x in sys.argv[1:]];print(f"{statistics.median(xs):.0f} ({min(xs):.0f}-{max(xs):.0f})")' "$@"; }
median() { python3 -c 'import statistics,sys;print(f"{statistics.median(float(x) for x in sys.argv[2:]):.{sys.argv[1]}f}")' "$@"; }

# Queries per second of one dnsperf run against 127.0.0.1:PORT (the rest: dnsperf's
# arguments); fails, with dnsperf's report, when it lost more than one query in 10,000 (a
# saturated UDP server drops a few; more is not a measurement) or saw response codes other
# than NOERROR and NXDOMAIN: a server that refuses or fails answers fast and measures nothing.
dnsperf_qps() { # port, dnsperf arguments
  local port=$1 out lost codes qps; shift
  out=$(dnsperf -s 127.0.0.1 -p "$port" "$@" 2>&1) || { echo "dnsperf against port $port failed:" >&2; echo "$out" >&2; return 1; }
  lost=$(awk '/Queries lost:/ {print $3}' <<<"$out")
  local sent; sent=$(awk '/Queries sent:/ {print $3}' <<<"$out")
  codes=$(awk -F'Response codes: *' 'NF > 1 {print $2}' <<<"$out")
  qps=$(awk '/Queries per second:/ {print $4}' <<<"$out")
  if [ -z "$lost" ] || [ -z "$sent" ] || [ $((lost * 10000)) -gt "$sent" ] || [ -z "$codes" ] || [ -z "$qps" ] \
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
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends knot dnsperf nsd >/dev/null; }
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
    udp-workers: 1
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
  taskset -c 0 knotd -c "$W/knot/knot.conf" 2>"$W/knot/err.log" & local kp=$!; PIDS+=("$kp")
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
  # Node defaults (the record cache included), pinned to core 0 like the references.
  TASKSET="taskset -c 0" serve "$d.node" "$W/dns-node.log"
  local node_pid=$SERVE_PID
  # Before measuring: Knot answers a known identifier NOERROR, with the node's TXT texts.
  local first ref node
  first=$(head -n 1 "$d.queries" | cut -d' ' -f1)
  ref=$(txt_answer 5401 "$first") || { echo "bench.sh dns: the reference does not serve the generated zone" >&2; exit 1; }
  node=$(txt_answer 5400 "$first") || { echo "bench.sh dns: the node does not serve the imported data" >&2; exit 1; }
  if [ "$ref" != "$node" ]; then
    printf 'bench.sh dns: Knot and the node answer %s TXT differently\nKnot:\n%s\nnode:\n%s\n' "$first" "$ref" "$node" >&2
    exit 1
  fi
  # Half the queries for names that do not exist (a letter before the first label).
  awk 'NR % 2 == 0 {print "x" $0; next} {print}' "$d.queries" >"$d.nx-queries"
  local q=(-c 4 -T 1 -q 200)
  # The same warm-up for each server (one whole pass over the names: the node's record
  # cache then holds what Knot loaded), then three interleaved runs per row: reference,
  # idnode, reference, idnode, ...
  taskset -c 1 dnsperf -s 127.0.0.1 -p 5401 -d "$d.queries" "${q[@]}" -n 1 >/dev/null 2>&1
  taskset -c 1 dnsperf -s 127.0.0.1 -p 5400 -d "$d.queries" "${q[@]}" -n 1 >/dev/null 2>&1
  interleaved "DNS hits, $N_DNS identifiers, node defaults" "Knot 3.2, 1 UDP worker" 5401 "$kp" "$d.queries" "$node_pid"
  interleaved "DNS, 50 % NXDOMAIN" "Knot 3.2, 1 UDP worker" 5401 "$kp" "$d.nx-queries" "$node_pid"
  stop "$kp"
  if command -v nsd >/dev/null; then
    mkdir -p "$W/nsd"
    printf '%s\n' "server:" "  ip-address: 127.0.0.1@5402" "  server-count: 1" "  username: \"\"" \
      "  zonesdir: \"$W/nsd\"" "  database: \"\"" "  pidfile: \"$W/nsd/nsd.pid\"" "  xfrdfile: \"$W/nsd/xfrd.state\"" \
      "  zonelistfile: \"$W/nsd/zone.list\"" "  logfile: \"$W/nsd/nsd.log\"" "remote-control:" "  control-enable: no" \
      "zone:" "  name: id.example." "  zonefile: \"$d.zone\"" >"$W/nsd/nsd.conf"
    taskset -c 0 nsd -d -c "$W/nsd/nsd.conf" 2>"$W/nsd/err.log" & local np=$!; PIDS+=("$np")
    local nsoa=""
    for _ in $(seq 1 600); do
      nsoa=$(dig @127.0.0.1 -p 5402 +short SOA id.example. 2>/dev/null || true)
      [[ "$nsoa" == *hostmaster* ]] && break
      kill -0 "$np" 2>/dev/null || break
      sleep 0.5
    done
    [[ "$nsoa" == *hostmaster* ]] || { echo "bench.sh dns: NSD never served the zone; $W/nsd/nsd.log" >&2; exit 1; }
    [ "$(txt_answer 5402 "$first")" = "$node" ] || { echo "bench.sh dns: NSD and the node answer $first differently" >&2; exit 1; }
    taskset -c 1 dnsperf -s 127.0.0.1 -p 5402 -d "$d.queries" "${q[@]}" -n 1 >/dev/null 2>&1
    interleaved "DNS hits, $N_DNS identifiers, node defaults" "NSD, 1 server process" 5402 "$np" "$d.queries" "$node_pid"
    stop "$np"
  fi
  stop "$node_pid"
}

# CPU seconds (user + system) the processes PID... and all their live descendants have
# used (NSD answers from a grandchild of the process started: xfrd → main → server).
descendants() { local c; for c in $(pgrep -P "$1" || true); do echo "$c"; descendants "$c"; done; }
cpu_of() {
  local p t=0
  for p in "$@" $(for c in "$@"; do descendants "$c"; done); do
    # utime and stime are fields 14 and 15, counted after the command name, which may hold
    # spaces ("(nsd: xfrd)"): split after its closing parenthesis.
    t=$(awk -v t="$t" -v k="$(getconf CLK_TCK)" '{sub(/.*\) /, ""); printf "%.3f", t + ($12 + $13) / k}' "/proc/$p/stat" 2>/dev/null || echo "$t")
  done
  echo "$t"
}

# One row: dnsperf against the reference (PORT, PID) and the node (5400, NODE_PID), pinned
# to core 1, interleaved three times; medians with min-max, the ratio of medians, and each
# server's CPU time per query.
interleaved() { # label, reference name, port, pid, queries file, node pid
  local label=$1 name=$2 port=$3 pid=$4 file=$5 node_pid=$6 i ref=() idn=() rcpu=() icpu=() c0 out
  for i in 1 2 3; do
    for side in ref idn; do
      local p=$port sp=$pid
      [ "$side" = idn ] && { p=5400; sp=$node_pid; }
      c0=$(cpu_of "$sp")
      out=$(taskset -c 1 bash -c "$(declare -f dnsperf_qps); dnsperf_qps $p -d '$file' -c 4 -T 1 -q 200 -l $DURATION") \
        || { echo "bench.sh dns: $label: the $side run is not a measurement" >&2; exit 1; }
      local cpu_us; cpu_us=$(awk -v a="$c0" -v b="$(cpu_of "$sp")" -v q="$out" -v s="$DURATION" 'BEGIN {printf "%.1f", (b - a) * 1e6 / (q * s)}')
      if [ "$side" = ref ]; then ref+=("$out"); rcpu+=("$cpu_us"); else idn+=("$out"); icpu+=("$cpu_us"); fi
    done
  done
  local rm im; rm=$(spread "${ref[@]}"); im=$(spread "${idn[@]}")
  row "$label, dnsperf -c 4 -T 1 -q 200, ${DURATION} s × 3 interleaved ($COMMIT)" \
    "$name: $rm qps, $(median 1 "${rcpu[@]}") µs CPU/query" \
    "idnode: $im qps, $(median 1 "${icpu[@]}") µs CPU/query" \
    "$(echo "${im%% *} ${rm%% *}" | awk '{printf "%.2f", $1/$2}')"
}

# One `idnode bench` run pinned to core 1 against 127.0.0.1:PORT (server PID for its CPU
# time); writes REPORT and prints "throughput p99_us cpu_us_per_request". Fails when the
# client saw errors other than NOT_FOUND (expected only with --miss-ratio).
bench_run() { # port, pid, report, bench arguments...
  local port=$1 pid=$2 report=$3 c0; shift 3
  c0=$(cpu_of "$pid")
  taskset -c 1 "$B" bench --node "http://127.0.0.1:$port" --report "$report" "$@" >/dev/null
  python3 - "$report" "$c0" "$(cpu_of "$pid")" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
bad = {k: v for k, v in r["errors"].items() if k != "not_found"}
if bad or r["ok"] == 0:
    sys.exit(f"bench.sh: {sys.argv[1]}: errors {r['errors']}, {r['ok']} answered")
cpu = (float(sys.argv[3]) - float(sys.argv[2])) * 1e6 / max(r["requests"], 1)
print(f"{r['throughput']:.0f} {r['latency_us']['p99']} {cpu:.1f}")
EOF
}

# gRPC Resolve against the trivial tonic server holding the node's own records (the same
# answers, byte for byte: bulk::the_trivial_grpc_reference_answers_what_the_node_answers).
# Both pinned to core 0, `idnode bench` to core 1, node defaults; three interleaved runs per
# row. Closed loop: 64 in flight, uniform keys. Open loop: 70 % of the trivial server's
# median closed-loop rate, Zipf keys, 5 % misses; the row compares p99 latencies.
grpc() {
  local d="$W/grpc-$N_GRPC" i side out
  if [ ! -s "$d.jsonl" ] || [ "$B" -nt "$d.jsonl" ]; then "$B" gen --count "$N_GRPC" --out "$d.jsonl"; fi
  rm -rf "$d.node" && "$B" import --offline --create --data-dir "$d.node" "$d.jsonl" >/dev/null
  taskset -c 0 "$B" bench-reference grpc --addr 127.0.0.1:7401 --data-dir "$d.node" >"$W/trivial.log" 2>&1 & local tp=$!; PIDS+=("$tp")
  wait_for "$W/trivial.log" "trivial Resolver"
  TASKSET="taskset -c 0" serve "$d.node" "$W/grpc-node.log"
  local node_pid=$SERVE_PID conn=(--concurrency 64 --connections 4 --gen-count "$N_GRPC")
  # The same warm-up for both: one pass over every key.
  for side in 7401 7400; do
    taskset -c 1 "$B" bench --node "http://127.0.0.1:$side" "${conn[@]}" --count "$N_GRPC" --duration 300 --distribution sequential >/dev/null
  done
  local rt=() rc=() it=() ic=() rp=() ip=() rpc=() ipc=()
  for i in 1 2 3; do
    out=($(bench_run 7401 "$tp" "$W/grpc-closed-trivial-$i.json" "${conn[@]}" --duration "$DURATION" --label trivial))
    rt+=("${out[0]}"); rc+=("${out[2]}")
    out=($(bench_run 7400 "$node_pid" "$W/grpc-closed-idnode-$i.json" "${conn[@]}" --duration "$DURATION" --label idnode))
    it+=("${out[0]}"); ic+=("${out[2]}")
  done
  local rm im rate; rm=$(spread "${rt[@]}"); im=$(spread "${it[@]}")
  row "gRPC Resolve, closed loop, $N_GRPC identifiers, 64 in flight, 4 connections, ${DURATION} s × 3 interleaved ($COMMIT)" \
    "trivial tonic server: $rm rps, $(median 1 "${rc[@]}") µs CPU/request" \
    "idnode: $im rps, $(median 1 "${ic[@]}") µs CPU/request" \
    "$(echo "${im%% *} ${rm%% *}" | awk '{printf "%.2f", $1/$2}')"
  rate=$(echo "${rm%% *}" | awk '{printf "%d", $1 * 0.7}')
  local open=(--rate "$rate" --distribution zipf --miss-ratio 0.05 --concurrency 256 --connections 4 --gen-count "$N_GRPC" --duration "$DURATION")
  for i in 1 2 3; do
    out=($(bench_run 7401 "$tp" "$W/grpc-open-trivial-$i.json" "${open[@]}" --label trivial))
    rp+=("${out[1]}"); rpc+=("${out[2]}")
    out=($(bench_run 7400 "$node_pid" "$W/grpc-open-idnode-$i.json" "${open[@]}" --label idnode))
    ip+=("${out[1]}"); ipc+=("${out[2]}")
  done
  stop "$node_pid"; stop "$tp"
  rm=$(spread "${rp[@]}"); im=$(spread "${ip[@]}")
  "$B" bench-compare "$W/grpc-open-trivial-2.json" "$W/grpc-open-idnode-2.json" --plot "$W/grpc-open.svg" >/dev/null
  row "gRPC Resolve, open loop at $rate/s (70 % of the trivial server's rate), Zipf keys, 5 % misses, p99 ($COMMIT; plot $W/grpc-open.svg)" \
    "trivial tonic server: p99 $rm µs, $(median 1 "${rpc[@]}") µs CPU/request" \
    "idnode: p99 $im µs, $(median 1 "${ipc[@]}") µs CPU/request" \
    "$(echo "${im%% *} ${rm%% *}" | awk '{printf "%.2f", $1/$2}')"
}

# Reads during an online import: Resolve at 5,000/s open loop, Zipf keys, over the N_GRPC
# records of the gRPC row's store, on the idle node and then while `idnode import` loads
# N_DURING other records (under 88.101.9.*) into the same node; p99 of each, three runs each.
# The node on core 0; both clients on core 1.
during() {
  local d="$W/grpc-$N_GRPC" m="$W/during-${N_DURING:=10000000}" i out idle=() busy=() ip
  if [ ! -s "$d.jsonl" ] || [ "$B" -nt "$d.jsonl" ]; then "$B" gen --count "$N_GRPC" --out "$d.jsonl"; fi
  if [ ! -s "$m.jsonl" ] || [ "$B" -nt "$m.jsonl" ]; then "$B" gen --count "$N_DURING" --node-prefix 88.101.9 --out "$m.jsonl"; fi
  rm -rf "$d.node" && "$B" import --offline --create --data-dir "$d.node" "$d.jsonl" >/dev/null
  TASKSET="taskset -c 0" serve "$d.node" "$W/during-node.log"
  local node_pid=$SERVE_PID reads=(--rate 5000 --distribution zipf --concurrency 256 --connections 4 --gen-count "$N_GRPC" --duration "$DURATION")
  taskset -c 1 "$B" bench --node http://127.0.0.1:7400 --gen-count "$N_GRPC" --count "$N_GRPC" --duration 300 --distribution sequential --concurrency 64 >/dev/null
  for i in 1 2 3; do
    out=($(bench_run 7400 "$node_pid" "$W/during-idle-$i.json" "${reads[@]}" --label idle)); idle+=("${out[1]}")
  done
  rm -f "$m.jsonl.progress"
  taskset -c 1 "$B" import "$m.jsonl" --node http://127.0.0.1:7400 --token-file "$d.node/admin.token" --json >"$W/during-import.json" 2>&1 & ip=$!; PIDS+=("$ip")
  sleep 5
  for i in 1 2 3; do
    kill -0 "$ip" 2>/dev/null || { echo "bench.sh during: the import ended before the reads (raise N_DURING)" >&2; exit 1; }
    out=($(bench_run 7400 "$node_pid" "$W/during-import-$i.json" "${reads[@]}" --label "during import")); busy+=("${out[1]}")
  done
  kill -0 "$ip" 2>/dev/null || { echo "bench.sh during: the import ended during the reads (raise N_DURING)" >&2; exit 1; }
  stop "$ip"; stop "$node_pid"
  "$B" bench-compare "$W/during-idle-2.json" "$W/during-import-2.json" --plot "$W/during.svg" >/dev/null
  local rm im; rm=$(spread "${idle[@]}"); im=$(spread "${busy[@]}")
  row "Resolve p99 at 5,000/s open loop, Zipf, during an online import ($COMMIT; plot $W/during.svg)" \
    "idle node: p99 $rm µs" "during the import: p99 $im µs" "$(echo "${im%% *} ${rm%% *}" | awk '{printf "%.2f", $1/$2}')"
}

# Wall-clock records per second of N records over the command's run.
rate_of() { # records, command...
  local n=$1 t0; shift
  t0=$(date +%s.%N)
  "$@" >/dev/null
  awk -v n="$n" -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.0f", n / (b - a)}'
}

# Online import of N_IMPORT records into an empty node through BatchRegister (`idnode import`,
# 2000 records per message, pinned to core 1), timed until the node's memtables are flushed
# (SIGTERM: the node flushes them, then exits), against `bench-reference rocks-batch` doing
# the same work in its simplest form and timed to its flush
# (bulk::the_import_references_write_what_the_node_writes). Servers on core 0; interleaved.
import() {
  local d="$W/import-$N_IMPORT" i raw=() online=() rc=() ic=() t0
  if [ ! -s "$d.jsonl" ] || [ "$B" -nt "$d.jsonl" ]; then "$B" gen --count "$N_IMPORT" --out "$d.jsonl"; fi
  for i in $(seq 1 "$RUNS"); do
    rm -rf "$d.raw"
    raw+=("$(counted "$W/cpu" taskset -c 0 "$B" bench-reference rocks-batch --input "$d.jsonl" --dir "$d.raw" | python3 -c "import json,sys;print(round(json.load(sys.stdin)['records_per_second']))")")
    rc+=("$(per_record "$W/cpu" "$N_IMPORT")")
    rm -rf "$d.raw" "$d.online"
    CPU_FILE="$W/cpu" TASKSET="taskset -c 0" serve "$d.online" "$W/import-node.log"
    t0=$(date +%s.%N)
    taskset -c 1 "$B" import "$d.jsonl" --node http://127.0.0.1:7400 --token-file "$d.online/admin.token" --json >"$W/import-online.json"
    stop "$SERVE_PID"
    online+=("$(awk -v n="$N_IMPORT" -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.0f", n / (b - a)}')")
    ic+=("$(per_record "$W/cpu" "$N_IMPORT")")
    python3 -c "import json,sys;r=json.load(open('$W/import-online.json'));sys.exit(0 if r['registered'] == $N_IMPORT else f'bench.sh import: {r}')"
    [ "$i" = "$RUNS" ] || rm -rf "$d.online" # the last store stays for the disk row
  done
  local rm im; rm=$(spread "${raw[@]}"); im=$(spread "${online[@]}")
  row "online import (BatchRegister), $N_IMPORT records into an empty store, until flushed, × $RUNS interleaved ($COMMIT)" \
    "raw RocksDB, equal work: $rm records/s, $(median 1 "${rc[@]}") µs CPU/record" "idnode: $im records/s, $(median 1 "${ic[@]}") µs CPU/record" "$(echo "${im%% *} ${rm%% *}" | awk '{printf "%.2f", $1/$2}')"
}

# Offline import of the same N_IMPORT records, unsorted, 1 GiB of sorting memory each:
# `idnode import --offline` against `bench-reference rocks-sst` (external sort, table files
# of the records and the log index, ingestion, counters), wall clock of each process, on
# core 0; interleaved. The last node store stays for the disk row.
offline() {
  local d="$W/import-$N_IMPORT" i raw=() off=() rc=() oc=()
  if [ ! -s "$d.jsonl" ] || [ "$B" -nt "$d.jsonl" ]; then "$B" gen --count "$N_IMPORT" --out "$d.jsonl"; fi
  for i in $(seq 1 "$RUNS"); do
    rm -rf "$d.sst" "$d.offline"
    raw+=("$(rate_of "$N_IMPORT" counted "$W/cpu" taskset -c 0 "$B" bench-reference rocks-sst --input "$d.jsonl" --dir "$d.sst")")
    rc+=("$(per_record "$W/cpu" "$N_IMPORT")")
    rm -rf "$d.sst"
    off+=("$(rate_of "$N_IMPORT" counted "$W/cpu" taskset -c 0 "$B" import --offline --create --data-dir "$d.offline" "$d.jsonl")")
    oc+=("$(per_record "$W/cpu" "$N_IMPORT")")
  done
  local rm im; rm=$(spread "${raw[@]}"); im=$(spread "${off[@]}")
  row "offline import, $N_IMPORT records, input unsorted, × $RUNS interleaved ($COMMIT)" \
    "raw external sort + SstFileWriter + ingest, equal work: $rm records/s, $(median 1 "${rc[@]}") µs CPU/record" "idnode: $im records/s, $(median 1 "${oc[@]}") µs CPU/record" "$(echo "${im%% *} ${rm%% *}" | awk '{printf "%.2f", $1/$2}')"
}

# Logical bytes of a data set: identifiers, value types and data (+ 4 per value's index).
logical_bytes() {
  python3 - "$1" <<'EOF'
import json, sys
total = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    total += len(r["identifier"].encode()) + sum(len(v["type"].encode()) + len(v["data"].encode()) + 4 for v in r["values"])
print(total)
EOF
}

disk() {
  local d="$W/import-$N_IMPORT"
  [ -d "$d.offline" ] || offline >/dev/null
  local logical bytes kind
  logical=$(logical_bytes "$d.jsonl")
  # The stores the import rows left (offline: ingested at the last level; online: the last
  # run's, flushed), and one built by single writes: the first N_SINGLE (1M) records sent one
  # per BatchRegister message (a log entry each, as a Register). Each after `idnode compact`,
  # its size before compaction in the label.
  local n1="${N_SINGLE:-1000000}" s="$W/single-${N_SINGLE:-1000000}"
  if [ ! -f "$s.built" ] || [ "$B" -nt "$s.built" ]; then
    rm -rf "$s" "$s.built" && head -n "$n1" "$d.jsonl" >"$s.jsonl"
    TASKSET="taskset -c 0" serve "$s" "$W/single-node.log"
    taskset -c 1 "$B" import "$s.jsonl" --chunk 1 --node http://127.0.0.1:7400 --token-file "$s/admin.token" --json >/dev/null
    stop "$SERVE_PID" && touch "$s.built"
  fi
  local kind dir n before tables
  for kind in offline online single; do
    case $kind in single) dir=$s n=$n1 ;; *) dir=$d.$kind n=$N_IMPORT ;; esac
    [ -d "$dir/db" ] || continue
    before=$(du -sb "$dir/db" | cut -f1)
    tables=$("$B" compact --data-dir "$dir" --json | python3 -c "import json,sys;t=json.load(sys.stdin)['tables'];print(', '.join(f'{k} {v/$n:.1f}' for k,v in sorted(t.items(),key=lambda x:-x[1]) if v/$n>=0.1))")
    bytes=$(du -sb "$dir/db" | cut -f1)
    [ $kind = single ] && logical=$(logical_bytes "$s.jsonl")
    row "bytes on disk per record, $n records ($kind import; after \`idnode compact\`, $(echo "$before $n" | awk '{printf "%.0f", $1/$2}') B/record before; per table: $tables; $COMMIT)" "logical $(echo "$logical $n" | awk '{printf "%.0f", $1/$2}') B/record" "on disk $(echo "$bytes $n" | awk '{printf "%.0f", $1/$2}') B/record" "$(echo "$bytes $logical" | awk '{printf "%.2f", $1/$2}')"
  done
}

# A copy of a store whose table files are hard links (RocksDB never changes a table file in
# place; every other file is copied).
clone() { # source, destination
  rm -rf "$2" && cp -al "$1" "$2"
  (cd "$1" && find . -type f ! -name '*.sst' -print0) | while IFS= read -r -d '' f; do
    rm "$2/$f" && cp "$1/$f" "$2/$f"
  done
}

# A store of N records built offline from `idnode gen` piped into the importer (100M
# records would be ~26 GB of JSON), again when the binary is newer than it.
scale_store() { # records, directory, builder ("node" or "raw")
  [ -f "$2.built" ] && [ ! "$B" -nt "$2.built" ] && return
  rm -rf "$2" "$2.built"
  local t0=$SECONDS
  if [ "$3" = node ]; then
    "$B" gen --count "$1" --out - 2>/dev/null | taskset -c 0 "$B" import --offline --create --data-dir "$2" - --json >"$2.import.json"
  else
    "$B" gen --count "$1" --out - 2>/dev/null | taskset -c 0 "$B" bench-reference rocks-sst --input /dev/stdin --dir "$2" >"$2.import.json"
  fi
  echo "built $2 ($1 records, $3) in $((SECONDS - t0)) s: $(du -sh "$2" | cut -f1); $(cat "$2.import.json")" >&2
  touch "$2.built"
}

# Drops a store's files from the OS page cache (as after a reboot).
evict() { python3 -c "
import os, sys
for root, _, files in os.walk(sys.argv[1]):
    for f in files:
        fd = os.open(os.path.join(root, f), os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)" "$1"; }

# Resolve at N_SCALE records against the same node at N_BASE, node defaults (256 MiB block
# cache, 320 MiB record cache); each node on core 0, `idnode bench` on core 1, 64 in
# flight on 4 connections, uniform and Zipf keys.
# - cold: the node started with its files dropped from the page cache; the first COLD
#   seconds (60) of reads (uniform; then again, dropped and restarted, Zipf);
# - steady: the table files in the page cache (read once, as on a node that has served a
#   while), three interleaved runs per side and distribution; the big node's peak RSS
#   (VmHWM) after them, and its index and filter bytes per record (RocksDB's table
#   properties, from /metrics);
# - online import of N_DURING records (under 88.101.9) into a copy of the 100M store, the
#   node against `bench-reference rocks-batch` into a copy of a raw store of the same N_SCALE
#   records (`rocks-sst`), RUNS interleaved runs, timed to the flush.
scale() {
  local big="${N_SCALE:-100000000}" base="${N_BASE:-1000000}" cold_s="${COLD:-60}" m="$W/during-${N_DURING:=10000000}"
  local d0="$W/scale-$base.node" d1="$W/scale-$big.node" raw="$W/scale-$big.raw" i dist out p0 p1
  scale_store "$base" "$d0" node
  scale_store "$big" "$d1" node
  local conn=(--concurrency 64 --connections 4)
  # Cold.
  local cold=()
  for dist in uniform zipf; do
    evict "$d1"
    TASKSET="taskset -c 0" PORT=7410 serve "$d1" "$W/scale-node.log"
    out=($(bench_run 7410 "$SERVE_PID" "$W/scale-cold-$dist.json" "${conn[@]}" --gen-count "$big" --distribution "$dist" --duration "$cold_s" --label "$big cold, $dist"))
    cold+=("${out[0]}")
    stop "$SERVE_PID"
  done
  # Steady.
  cat "$d1"/db/*.sst >/dev/null
  TASKSET="taskset -c 0" serve "$d0" "$W/scale-base.log"; p0=$SERVE_PID
  TASKSET="taskset -c 0" PORT=7410 HTTP=127.0.0.1:7411 serve "$d1" "$W/scale-node.log"; p1=$SERVE_PID
  taskset -c 1 "$B" bench --node http://127.0.0.1:7400 "${conn[@]}" --gen-count "$base" --count "$base" --duration 300 --distribution sequential >/dev/null
  taskset -c 1 "$B" bench --node http://127.0.0.1:7410 "${conn[@]}" --gen-count "$big" --duration "$DURATION" >/dev/null
  local b_u=() s_u=() b_z=() s_z=() bc_u=() sc_u=() bc_z=() sc_z=()
  for i in 1 2 3; do
    for dist in uniform zipf; do
      out=($(bench_run 7400 "$p0" "$W/scale-$base-$dist-$i.json" "${conn[@]}" --gen-count "$base" --distribution "$dist" --duration "$DURATION" --label "$base, $dist"))
      if [ $dist = uniform ]; then b_u+=("${out[0]}"); bc_u+=("${out[2]}"); else b_z+=("${out[0]}"); bc_z+=("${out[2]}"); fi
      out=($(bench_run 7410 "$p1" "$W/scale-$big-$dist-$i.json" "${conn[@]}" --gen-count "$big" --distribution "$dist" --duration "$DURATION" --label "$big, $dist"))
      if [ $dist = uniform ]; then s_u+=("${out[0]}"); sc_u+=("${out[2]}"); else s_z+=("${out[0]}"); sc_z+=("${out[2]}"); fi
    done
  done
  local hwm hwm0 props
  hwm=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$p1/status"); hwm0=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$p0/status")
  props=$(curl -s http://127.0.0.1:7411/metrics | awk -F'[ "]' '/idnode_rocksdb\{property="(index|filter)-bytes"\}/ {printf "%s=%s ", $2, $NF}')
  stop "$p1"; stop "$p0"
  "$B" bench-compare "$W/scale-$base-zipf-2.json" "$W/scale-$big-zipf-2.json" --plot "$W/scale-zipf.svg" >/dev/null
  local bm sm
  for dist in uniform zipf; do
    if [ $dist = uniform ]; then bm=$(spread "${b_u[@]}"); sm=$(spread "${s_u[@]}"); c0=$(median 1 "${bc_u[@]}"); c1=$(median 1 "${sc_u[@]}"); else bm=$(spread "${b_z[@]}"); sm=$(spread "${s_z[@]}"); c0=$(median 1 "${bc_z[@]}"); c1=$(median 1 "${sc_z[@]}"); fi
    row "gRPC Resolve at $big records, $dist keys, steady (table files in the page cache), node defaults, ${DURATION} s × 3 interleaved ($COMMIT)" \
      "the same node at $base: $bm rps, $c0 µs CPU/request" "$sm rps, $c1 µs CPU/request" "$(echo "${sm%% *} ${bm%% *}" | awk '{printf "%.2f", $1/$2}')"
  done
  row "the same at $big, the first $cold_s s after the files were dropped from the page cache and the node started ($COMMIT; plots $W/scale-cold-*.svg)" \
    "steady at $big: uniform $(median 0 "${s_u[@]}"), Zipf $(median 0 "${s_z[@]}") rps" "uniform ${cold[0]} rps, Zipf ${cold[1]} rps" \
    "$(echo "${cold[0]} ${cold[1]} $(median 0 "${s_u[@]}") $(median 0 "${s_z[@]}")" | awk '{printf "%.2f / %.2f", $1/$3, $2/$4}')"
  local idx flt
  idx=$(echo "$props" | tr ' ' '\n' | awk -F= '$1=="index-bytes" {print $2}'); flt=$(echo "$props" | tr ' ' '\n' | awk -F= '$1=="filter-bytes" {print $2}')
  row "peak RSS (VmHWM) of the node under that load; index and filter bytes of its table files ($COMMIT)" \
    "at $base: $hwm0 MiB" "at $big: $hwm MiB; index $(echo "$idx $big" | awk '{printf "%.1f", $1/$2}') B/record ($((idx >> 20)) MiB), filters $(echo "$flt $big" | awk '{printf "%.1f", $1/$2}') B/record ($((flt >> 20)) MiB)" "-"
  # Online import into the N_SCALE stores (SCALE_IMPORT=0 skips it: at 300M the raw
  # reference's store and its uncompressed spilled runs need ~80 GB more).
  [ "${SCALE_IMPORT:-1}" = 0 ] && return
  if [ ! -s "$m.jsonl" ] || [ "$B" -nt "$m.jsonl" ]; then "$B" gen --count "$N_DURING" --node-prefix 88.101.9 --out "$m.jsonl"; fi
  scale_store "$big" "$raw" raw
  local r=() o=() rc=() oc=() t0
  for i in $(seq 1 "$RUNS"); do
    clone "$raw" "$raw.copy"
    r+=("$(counted "$W/cpu" taskset -c 0 "$B" bench-reference rocks-batch --input "$m.jsonl" --dir "$raw.copy" | python3 -c "import json,sys;print(round(json.load(sys.stdin)['records_per_second']))")")
    rc+=("$(per_record "$W/cpu" "$N_DURING")")
    rm -rf "$raw.copy"
    clone "$d1" "$d1.copy"
    CPU_FILE="$W/cpu" TASKSET="taskset -c 0" serve "$d1.copy" "$W/scale-import.log"
    rm -f "$m.jsonl.progress"
    t0=$(date +%s.%N)
    taskset -c 1 "$B" import "$m.jsonl" --node http://127.0.0.1:7400 --token-file "$d1.copy/admin.token" --json >"$W/scale-import.json"
    stop "$SERVE_PID"
    o+=("$(awk -v n="$N_DURING" -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.0f", n / (b - a)}')")
    oc+=("$(per_record "$W/cpu" "$N_DURING")")
    python3 -c "import json,sys;r=json.load(open('$W/scale-import.json'));sys.exit(0 if r['registered'] == $N_DURING else f'bench.sh scale: {r}')"
    rm -rf "$d1.copy"
  done
  local rm im; rm=$(spread "${r[@]}"); im=$(spread "${o[@]}")
  row "online import (BatchRegister), $N_DURING records into a store holding $big, until flushed, × $RUNS interleaved ($COMMIT)" \
    "raw RocksDB, equal work, into a raw store of the same $big: $rm records/s, $(median 1 "${rc[@]}") µs CPU/record" "idnode: $im records/s, $(median 1 "${oc[@]}") µs CPU/record" "$(echo "${im%% *} ${rm%% *}" | awk '{printf "%.2f", $1/$2}')"
}

# A replicated site against a single-process node, both on this box: three nats-server
# processes (R3) and three idnode servers share core 0 with the single-process node, the load
# generator runs on core 1; relative costs, not capacity. Each row alternates the two three
# times (A B A B A B) and prints medians with min-max. N_SITE records are imported per side
# (BatchRegister); N_CATCHUP records built offline seed a new site for the catch-up row.
site() {
  local nats="${IDNODE_NATS_SERVER:-${IDNODE_VENV:-/var/tmp/idnode-venv}/bin/nats-server}"
  local n="${N_SITE:-200000}" c="${N_CATCHUP:-10000000}" d="$W/site" i p f
  rm -rf "$d" && mkdir -p "$d"
  local routes="nats-route://127.0.0.1:14422, nats-route://127.0.0.1:14423, nats-route://127.0.0.1:14424"
  for i in 0 1 2; do
    mkdir -p "$d/nats$i"
    printf '%s\n' "server_name: n$i" "listen: 127.0.0.1:$((14322 + i))" "http: 127.0.0.1:$((14352 + i))" \
      "max_payload: 64MB" "jetstream { store_dir: \"$d/nats$i\", max_memory_store: 256MB, max_file_store: 64GB }" \
      "cluster { name: benchsite, listen: 127.0.0.1:$((14422 + i)), routes: [$routes] }" >"$d/nats$i.conf"
    taskset -c 0 "$nats" -c "$d/nats$i.conf" -l "$d/nats$i.log" & PIDS+=($!)
  done
  for i in 0 1 2; do
    for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$((14352 + i))/healthz" >/dev/null && break; sleep 0.1; done
  done
  local urls="nats://127.0.0.1:14322,nats://127.0.0.1:14323,nats://127.0.0.1:14324" sp=() np=("${PIDS[@]: -3}")
  for i in 0 1 2; do
    taskset -c 0 "$B" serve --config "$W/node.toml" --site "$urls" --data-dir "$d/idnode$i" --grpc-addr "127.0.0.1:$((7501 + i))" \
      --dns-addr off --http-addr off --no-seed --log-level warn >"$d/idnode$i.log" 2>&1 & PIDS+=($!); sp+=($!)
    wait_for "$d/idnode$i.log" "grpc://"
  done
  taskset -c 0 "$B" serve --config "$W/node.toml" --data-dir "$d/single" --grpc-addr 127.0.0.1:7500 --dns-addr off \
    --http-addr off --no-seed --log-level warn >"$d/single.log" 2>&1 & PIDS+=($!); local single=$!
  wait_for "$d/single.log" "grpc://"
  local site_token single_token="$d/single/admin.token"
  site_token=$(ls "$d"/idnode*/admin.token | head -1)
  local S="http://127.0.0.1:7501,http://127.0.0.1:7502" O="http://127.0.0.1:7503" P="http://127.0.0.1:7500"
  local gen=(taskset -c 1 "$B" bench --duration "$DURATION" --connections 2)
  # Median (min-max) of one figure over JSON reports.
  med() { python3 -c '
import json, statistics, sys
def get(f):
    v = json.load(open(f))
    for k in sys.argv[1].split("."):
        v = v[k]
    return v
xs = [get(f) for f in sys.argv[2:]]
print(f"{statistics.median(xs):.0f} ({min(xs):.0f}-{max(xs):.0f})")' "$@"; }
  # Register (one identifier per call), 16 in flight, through two servers; the third
  # resolves every 20th acknowledged identifier until it is there: the replication lag.
  local cs=() ci=() cn=() c0 i0 n0
  for i in 1 2 3; do
    c0=$(cpu_of "$single")
    "${gen[@]}" --op register --concurrency 16 --node "$P" --token-file "$single_token" --create-prefix 88.101 \
      --label single --report "$d/reg-single-$i.json" >/dev/null
    cs+=("$(python3 -c "import json;r=json.load(open('$d/reg-single-$i.json'));print(($(cpu_of "$single") - $c0) * 1e6 / r['ok'])")")
    i0=$(cpu_of "${sp[@]}"); n0=$(cpu_of "${np[@]}")
    "${gen[@]}" --op register --concurrency 16 --node "$S" --observe "$O" --token-file "$site_token" --create-prefix 88.101 \
      --label site --report "$d/reg-site-$i.json" >/dev/null
    sleep 2 # the lag drains; the servers' CPU for this run's writes is counted in full
    ci+=("$(python3 -c "import json;r=json.load(open('$d/reg-site-$i.json'));print(($(cpu_of "${sp[@]}") - $i0) * 1e6 / r['ok'])")")
    cn+=("$(python3 -c "import json;r=json.load(open('$d/reg-site-$i.json'));print(($(cpu_of "${np[@]}") - $n0) * 1e6 / r['ok'])")")
  done
  for f in "$d"/reg-*.json; do
    python3 -c "import json,sys;r=json.load(open('$f'));sys.exit(1 if r['errors'] or r.get('never_visible') else 0)" \
      || { echo "bench.sh site: errors in $f" >&2; cat "$f" >&2; exit 1; }
  done
  row "Register, 16 in flight: p50 µs" "single process: $(med latency_us.p50 "$d"/reg-single-*.json)" "3-server site: $(med latency_us.p50 "$d"/reg-site-*.json)" ""
  row "Register, 16 in flight: p99 µs" "single process: $(med latency_us.p99 "$d"/reg-single-*.json)" "3-server site: $(med latency_us.p99 "$d"/reg-site-*.json)" ""
  row "Register, 16 in flight: per second" "single process: $(med throughput "$d"/reg-single-*.json)" "3-server site: $(med throughput "$d"/reg-site-*.json)" ""
  row "Register: server CPU per registration (core 0), µs" "single process: $(median 0 "${cs[@]}")" "site: three idnode servers $(median 0 "${ci[@]}") + three nats-servers $(median 0 "${cn[@]}")" ""
  row "replication lag under that load (acknowledged → resolvable on another server), µs" "" "p50 $(med visible_after_us.p50 "$d"/reg-site-*.json), p99 $(med visible_after_us.p99 "$d"/reg-site-*.json), max $(med visible_after_us.max "$d"/reg-site-*.json)" ""
  # Online import (BatchRegister, the importer's defaults) of N_SITE records: the first run
  # registers them, the next two find them present (the same checks, no new records).
  local data="$W/site-$n.jsonl"
  [ -s "$data" ] || "$B" gen --count "$n" --out "$data" >/dev/null
  local imp_single=() imp_site=() rate='import json,sys;r=json.load(sys.stdin);assert r["failed"]==0,r;print(round(r["records_per_second"]))'
  for i in 1 2 3; do
    imp_single+=("$(taskset -c 1 "$B" import "$data" --node "$P" --token-file "$single_token" --json | python3 -c "$rate")")
    imp_site+=("$(taskset -c 1 "$B" import "$data" --node http://127.0.0.1:7501 --token-file "$site_token" --json | python3 -c "$rate")")
  done
  row "online import of $n records (BatchRegister), records/s: first run" "single process: ${imp_single[0]}" "3-server site, through one server: ${imp_site[0]}" "$(echo "${imp_site[0]} ${imp_single[0]}" | awk '{printf "%.2f", $1/$2}')"
  row "the same again (records present), median of two" "single process: $(spread "${imp_single[@]:1}")" "3-server site: $(spread "${imp_site[@]:1}")" ""
  # Resolve (gRPC, 64 in flight) of those records: the single node, and two site servers.
  for i in 1 2 3; do
    "${gen[@]}" --op resolve --concurrency 64 --keys "$data" --node "$P" --report "$d/res-single-$i.json" >/dev/null
    "${gen[@]}" --op resolve --concurrency 64 --keys "$data" --node http://127.0.0.1:7501 --report "$d/res-s0-$i.json" >/dev/null
    "${gen[@]}" --op resolve --concurrency 64 --keys "$data" --node http://127.0.0.1:7503 --report "$d/res-s2-$i.json" >/dev/null
  done
  row "gRPC Resolve, 64 in flight, per second" "single process: $(med throughput "$d"/res-single-*.json)" "site server 0: $(med throughput "$d"/res-s0-*.json); server 2: $(med throughput "$d"/res-s2-*.json)" "$(echo "$(med throughput "$d"/res-s0-*.json | cut -d' ' -f1) $(med throughput "$d"/res-single-*.json | cut -d' ' -f1)" | awk '{printf "%.2f", $1/$2}')"
  for p in "${sp[@]}" "$single"; do stop "$p"; done
  # Catch-up: N_CATCHUP records built offline seed a new site (stream SEED); a new server
  # restores that snapshot and joins; timed from its start until it serves.
  local cu="$W/catchup-$c"
  if [ ! -f "$cu/imported" ]; then
    rm -rf "$cu" && "$B" gen --count "$c" --out - 2>/dev/null | "$B" import --offline --create --data-dir "$cu" - --json >/dev/null
    touch "$cu/imported"
  fi
  local t0=$SECONDS
  "$B" site seed --site "$urls" --stream SEED --data-dir "$cu" >&2
  local seeded=$((SECONDS - t0))
  printf '[site]\nstream = "SEED"\nsnapshot_interval_secs = 0\n' >"$d/seed.toml"
  local t1; t1=$(date +%s.%N)
  taskset -c 0 "$B" serve --config "$d/seed.toml" --site "$urls" --data-dir "$d/joined" --grpc-addr 127.0.0.1:7510 \
    --dns-addr off --http-addr off --no-seed --log-level warn >"$d/joined.log" 2>&1 & PIDS+=($!); local jp=$!
  wait_for "$d/joined.log" "grpc://"
  local joined; joined=$(python3 -c "import time;print(f'{time.time()-$t1:.1f}')")
  "$B" bench --node http://127.0.0.1:7510 --op resolve --gen-count "$c" --count 1000 --concurrency 8 --report "$d/joined.json" >/dev/null
  python3 -c "import json,sys;r=json.load(open('$d/joined.json'));sys.exit(0 if r['ok']==r['requests']==1000 else 1)" \
    || { echo "bench.sh site: the joined server does not resolve the seeded records" >&2; exit 1; }
  stop "$jp"
  row "a new server catching up $c records from a snapshot (download, restore, join), s" "seeding the new site (upload): $seeded s" "$joined s ($(du -sb "$d/joined/db" | cut -f1) bytes of store)" ""
}

echo "| measurement | reference | idnode | ratio |"
echo "| --- | --- | --- | --- |"
case "${1:-all}" in
  dns) dns ;; grpc) grpc ;; during) during ;; import) import ;; offline) offline ;; disk) disk ;; scale) scale ;; site) site ;;
  all) dns; grpc; during; import; offline; disk; scale; site ;;
  *) echo "unknown row $1" >&2; exit 2 ;;
esac
