#!/usr/bin/env bash
# Interop with independent, real clients against a running idnode (loopback only):
# dig (Debian dnsutils), curl, pyhandle (PyPI), grpcio (PyPI) and grpcurl (PyPI wrapper).
#
#   tests/interop/run.sh [path/to/idnode]
#
# Needs what scripts/setup installs (apt: bind9-dnsutils curl; a venv in $IDNODE_VENV,
# default /var/tmp/idnode-venv). Starts one node on free ports in a temporary directory, runs every
# check, stops the node by its PID, and ends with "interop: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN="${1:-${CARGO_TARGET_DIR:-target}/debug/idnode}"
VENV="${IDNODE_VENV:-/var/tmp/idnode-venv}"
# scripts/setup installs the clients (apt: bind9-dnsutils, curl; the venv); refuse to run without them.
if ! ./scripts/setup --check >/dev/null; then
  ./scripts/setup --check; echo "interop: run scripts/setup first"; exit 1
fi

passed=0; failed=0
check() { # name, command...
  local name="$1"; shift
  if "$@" >/tmp/idnode-interop-step.log 2>&1; then
    passed=$((passed + 1)); echo "ok   $name"
  else
    failed=$((failed + 1)); echo "FAIL $name"; sed 's/^/     /' /tmp/idnode-interop-step.log | tail -20
  fi
}

WORK="$(mktemp -d)"
"$BIN" serve --data-dir "$WORK/data" --grpc-addr 127.0.0.1:0 --dns-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 \
  --log-level warn >"$WORK/out.log" 2>"$WORK/err.log" &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 300); do
  grep -q "grpc://" "$WORK/out.log" 2>/dev/null && break
  kill -0 $PID 2>/dev/null || { echo "idnode exited:"; cat "$WORK/err.log"; exit 1; }
  sleep 0.1
done
GRPC=$(sed -n 's|.*grpc://\([0-9.:]*\).*|\1|p' "$WORK/out.log" | head -1)
DNS=$(sed -n 's|^DNS on \([0-9.]*\):\([0-9]*\).*|\2|p' "$WORK/out.log" | head -1)
HTTP=$(sed -n 's|^HTTP on \(http://[0-9.:]*\).*|\1|p' "$WORK/out.log" | head -1)
TOKEN_FILE="$WORK/data/tokens/88.101.5.token"
TOKEN=$(cat "$TOKEN_FILE")
echo "node: grpc $GRPC, dns 127.0.0.1:$DNS, http $HTTP"
echo "clients: $(dig -v 2>&1 | head -1); $(curl --version | head -1 | cut -d' ' -f1-2); pyhandle $("$VENV/bin/pip" show pyhandle | sed -n 's/^Version: //p'); grpcio $("$VENV/bin/pip" show grpcio | sed -n 's/^Version: //p'); grpcurl $("$VENV/bin/grpcurl" -version 2>&1 | awk '{print $2}')"

NAME="_42_41_54-2024-000001._.5.101.88.id.example."
DIG="dig @127.0.0.1 -p $DNS +norec +time=2 +tries=1"
check "dig TXT (UDP)" bash -c "$DIG TXT $NAME +short | grep -qx '\"1 string URL https://trace.example-auto.cn/p/BAT-2024-000001\"'"
check "dig TXT (TCP)" bash -c "$DIG +tcp TXT $NAME +short | grep -q '2 string partNumber CC-ENG-0916'"
check "dig URI" bash -c "$DIG TYPE256 $NAME +short | grep -qx '10 1 \"https://trace.example-auto.cn/p/BAT-2024-000001\"'"
check "dig NXDOMAIN with SOA" bash -c "$DIG TXT nope._.5.101.88.id.example. | grep -q 'status: NXDOMAIN' && $DIG TXT nope._.5.101.88.id.example. | grep -q 'IN	SOA'"
check "dig NODATA for an empty non-terminal" bash -c "$DIG A _.5.101.88.id.example. | grep -q 'status: NOERROR' && $DIG A _.5.101.88.id.example. | grep -q 'IN	SOA'"
check "dig REFUSED outside the zone" bash -c "$DIG TXT example.com. | grep -q 'status: REFUSED'"
check "dig upper-case name (0x20)" bash -c "$DIG TXT $(echo $NAME | tr a-z A-Z) +short | grep -q 'TEMPLATE_ID'"

check "curl GET" bash -c "curl -sf $HTTP/api/handles/88.101.5/BAT-2024-000001 | grep -q '\"responseCode\":1'"
check "curl PUT create (201)" bash -c "[ \$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Authorization: Bearer $TOKEN' -H 'Content-Type: application/json' '$HTTP/api/handles/88.101.5/CURL-1?overwrite=false' -d '{\"values\":[{\"index\":1,\"type\":\"URL\",\"data\":\"https://example.cn/curl\"}]}') = 201 ]"
check "curl PUT again (409, 101)" bash -c "curl -s -X PUT -H 'Authorization: Bearer $TOKEN' -H 'Content-Type: application/json' '$HTTP/api/handles/88.101.5/CURL-1?overwrite=false' -d '{\"values\":[{\"index\":1,\"type\":\"URL\",\"data\":\"x\"}]}' | grep -q '\"responseCode\":101'"
check "curl DELETE" bash -c "curl -sf -X DELETE -H 'Authorization: Bearer $TOKEN' $HTTP/api/handles/88.101.5/CURL-1 | grep -q '\"responseCode\":1'"
check "curl GET deleted (404, 100)" bash -c "[ \$(curl -s -o /dev/null -w '%{http_code}' $HTTP/api/handles/88.101.5/CURL-1) = 404 ]"
check "curl /healthz" bash -c "curl -sf $HTTP/healthz | grep -q '\"status\":\"ok\"'"
check "curl /metrics" bash -c "curl -sf $HTTP/metrics | grep -q 'idnode_requests_total{interface=\"dns\"'"

check "pyhandle REST client" "$VENV/bin/python" tests/interop/pyhandle_test.py --http "$HTTP" --prefix 88.101.5 --token-file "$TOKEN_FILE"
check "grpcio (stubs from proto/, reflection)" "$VENV/bin/python" tests/interop/grpc_test.py --grpc "$GRPC" --prefix 88.101.5 --token-file "$TOKEN_FILE" --proto-dir proto
check "grpcurl list (reflection)" bash -c "'$VENV/bin/grpcurl' -plaintext $GRPC list | grep -qx idnode.v1.Resolver"
check "grpcurl Resolve" bash -c "'$VENV/bin/grpcurl' -plaintext -d '{\"identifier\":\"88.101.5/BAT-2024-000001\"}' $GRPC idnode.v1.Resolver/Resolve | grep -q TEMPLATE_ID"

echo "interop: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
