#!/usr/bin/env bash
# Soak: SOAK_SECS (default 1800) of mixed load from `idnode bench` against node A (88.101):
# resolves of its own identifiers, misses, identifiers of node B (88.102, forwarded through
# the top-level node) and creations, at SOAK_RATE requests/s (open loop). The top-level
# node is stopped for OUTAGE_SECS and restarted twice (at 1/3 and 2/3 of the run). A's RSS
# is sampled every minute. Afterwards every acknowledged creation is verified on the live
# node, then again after A was killed with SIGKILL and restarted.
# Loopback only; every process started here is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/idnode-target}"
SECS="${SOAK_SECS:-1800}"
RATE="${SOAK_RATE:-2000}"
OUTAGE="${OUTAGE_SECS:-30}"
W="${SOAK_DIR:-/var/tmp/idnode-soak}"
rm -rf "$W" && mkdir -p "$W"
./scripts/setup
cargo build --release --locked --bin idnode 2>&1 | tail -1
# A private copy: rebuilding during the run cannot swap the binary under a restart.
cp "$CARGO_TARGET_DIR/release/idnode" "$W/idnode"
B="$W/idnode"
. scripts/lib.sh
log() { echo "[$(date -u +%H:%M:%S)] $*"; }

cat >"$W/node.toml" <<EOF
[limits]
client_requests_per_second = 0   # one load generator on one address
[upstream]
report_interval_secs = 10
timeout_ms = 500
[cache]                          # short, so the outages are felt: referrals and answers
max_ttl_secs = 10                # expire during them and stale answers are served
EOF

STARTS=0
start_top() { # each start logs to its own file, so the wait sees this start's banner
  STARTS=$((STARTS + 1))
  "$B" top-level serve --data-dir "$W/top" --grpc-addr 127.0.0.1:7191 --referral-ttl 10 >"$W/top.$STARTS.log" 2>&1 &
  TOP=$!; PIDS+=("$TOP")
  wait_for "$W/top.$STARTS.log" "grpc://127.0.0.1:7191"
}
start_node() { # name prefix grpc dns http
  STARTS=$((STARTS + 1))
  "$B" serve --config "$W/node.toml" --data-dir "$W/$1" --node-prefix "$2" --no-seed \
    --grpc-addr "127.0.0.1:$3" --dns-addr "127.0.0.1:$4" --http-addr "127.0.0.1:$5" \
    --upstream http://127.0.0.1:7191 --upstream-token-file "$W/top/node-tokens/$2.token" \
    --block-cache-mb 256 --log-level warn >"$W/$1.$STARTS.log" 2>&1 &
  LAST=$!; PIDS+=("$LAST")
  wait_for "$W/$1.$STARTS.log" "grpc://127.0.0.1:$3"
}
rss_mib() { awk '/VmRSS/ {printf "%d", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }

log "data sets"
"$B" gen --count 200000 --node-prefix 88.101 --seed 1 --out "$W/a.jsonl" >/dev/null
"$B" gen --count 20000 --node-prefix 88.102 --seed 2 --out "$W/b.jsonl" >/dev/null
"$B" import --offline --create --node-prefix 88.101 --data-dir "$W/a" "$W/a.jsonl" >/dev/null
"$B" import --offline --create --node-prefix 88.102 --data-dir "$W/b" "$W/b.jsonl" >/dev/null
for f in a b; do
  failed=$(wc -l <"$W/$f.jsonl.failures.jsonl")
  [ "$failed" -eq 0 ] || { echo "import of $f.jsonl: $failed failures" >&2; exit 1; }
done
start_top
start_node a 88.101 7291 5391 8091; A=$LAST
start_node b 88.102 7292 5392 8092; NB=$LAST
create_prefix=$(head -c 200 "$W/a.jsonl" | sed -n 's/.*"identifier":"\([^/]*\)\/.*/\1/p')
log "A pid $A, B pid $NB, top pid $TOP; creating under $create_prefix; ${SECS}s at ${RATE}/s"

"$B" bench --node http://127.0.0.1:7291 --op mixed --mix 90 --rate "$RATE" --duration "$SECS" \
  --keys "$W/a.jsonl" --remote-keys "$W/b.jsonl" --remote-ratio 0.1 --miss-ratio 0.05 \
  --token-file "$W/a/admin.token" --create-prefix "$create_prefix" --connections 4 \
  --acked "$W/acked.txt" --report "$W/report.json" --label soak >"$W/bench.out" 2>&1 &
LOAD=$!; PIDS+=("$LOAD")

start=$(date +%s); restarts=0; minute=0
while kill -0 "$LOAD" 2>/dev/null; do
  sleep 5
  t=$(( $(date +%s) - start ))
  if [ "$t" -ge $(( (minute + 1) * 60 )) ]; then
    minute=$((minute + 1))
    log "minute $minute: A rss $(rss_mib "$A") MiB, top rss $(rss_mib "$TOP") MiB, acked $(wc -l <"$W/acked.txt" 2>/dev/null || echo 0)"
  fi
  if [ "$restarts" -lt 2 ] && [ "$t" -ge $(( SECS * (restarts + 1) / 3 )) ]; then
    restarts=$((restarts + 1))
    log "restart $restarts: stopping the top-level node (pid $TOP) for ${OUTAGE}s"
    kill "$TOP"; wait "$TOP" 2>/dev/null || true
    sleep "$OUTAGE"
    start_top
    log "restart $restarts: top-level node back (pid $TOP)"
  fi
done
wait "$LOAD" || true
cat "$W/bench.out"
log "A rss at the end: $(rss_mib "$A") MiB"
curl -s http://127.0.0.1:8091/metrics | grep -E '^idnode_(forward|upstream|refused|rocksdb)' || true

log "verifying acknowledged creations on the live node"
"$B" bench --node http://127.0.0.1:7291 --token-file "$W/a/admin.token" --verify "$W/acked.txt" --concurrency 32
log "SIGKILL node A, restart, verify again"
kill -9 "$A"; wait "$A" 2>/dev/null || true
start_node a 88.101 7291 5391 8091; A=$LAST
"$B" bench --node http://127.0.0.1:7291 --token-file "$W/a/admin.token" --verify "$W/acked.txt" --concurrency 32
"$B" audit verify --data-dir "$W/a" || true
log "done"
