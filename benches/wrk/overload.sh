#!/usr/bin/env bash
# The server under a crowd of connections, driven by wrk (docs/PERFORMANCE.md, "Overload"):
# the release server on a fresh SQLite file with its admission control as shipped (the
# per-client submission limit off, so that admission alone decides), then wrk with
# benches/wrk/post-application.lua: first 64 connections (the sustainable rate S: nothing
# may be shed), then 1,000 connections. Each run prints a table row: answers per second by
# status, goodput against S, wrk's latency percentiles (all answers), the server's shed
# answers within 1 ms (its own histogram, /metrics), and the server's resident set.
#
#   cargo build --release --bin ochered && benches/wrk/overload.sh [SECONDS]
#
# OCHERED_WRK_SERVE_ARGS adds flags to `ochered serve` (e.g. "--admission-target-ms 0"), to
# compare admission settings in the same window.
#
# Needs wrk (Debian package wrk), curl and python3.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${OCHERED_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/ochered}"
seconds="${1:-20}"
port="${OCHERED_WRK_PORT:-18181}"
secret="wrk-bench-secret"
dir="$(mktemp -d)"
url="http://127.0.0.1:$port"
"$bin" serve --listen "127.0.0.1:$port" --database-url "sqlite://$dir/wrk.db" \
  --jwt-secret "$secret" --rate-limit-per-minute 0 ${OCHERED_WRK_SERVE_ARGS:-} >"$dir/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 200); do curl -sf "$url/ready" >/dev/null && break; sleep 0.1; done
curl -sf "$url/ready" >/dev/null || { cat "$dir/server.log"; exit 1; }
kindergarten=$(curl -sf "$url/api/v1/authorities/demo/institutions" | python3 -c '
import json, sys
items = json.load(sys.stdin)
items = items.get("institutions", items) if isinstance(items, dict) else items
print(next(i["id"] for i in items if i.get("kind") == "kindergarten"))')
for i in $(seq 1 200); do
  "$bin" token --role parent --sub "wrk-parent-$i" --jwt-secret "$secret"
done >"$dir/tokens"
export OCHERED_WRK_TOKENS="$dir/tokens" OCHERED_WRK_KINDERGARTEN="$kindergarten"

# The server's shed submissions so far: "all within_1ms".
shed() {
  curl -sf "$url/metrics" | python3 -c '
import sys
route = "route=\"/api/v1/authorities/{authority}/kindergarten/applications\""
all_ = within = 0.0
for line in sys.stdin:
    if line.startswith("ochered_http_request_seconds_bucket") and route in line and "outcome=\"shed\"" in line:
        v = float(line.rsplit(" ", 1)[1])
        if "le=\"+Inf\"" in line: all_ += v
        elif "le=\"0.001\"" in line: within += v
print(all_, within)'
}
memory() { awk '/VmRSS|VmHWM/ {printf "%s %.0f MiB  ", $1, $2/1024}' "/proc/$server/status"; }

echo "| connections | answers/s | 201/s | goodput ÷ S | 503/s | other | wrk p50 / p99 / max (all answers) | server: shed within 1 ms | server RSS |"
echo "|---|---|---|---|---|---|---|---|---|"
sustainable=""
for connections in 64 1000; do
  read -r shed0 within0 < <(shed)
  export OCHERED_WRK_STATUS_FILE="$dir/status-$connections" OCHERED_WRK_RUN="C$connections"
  wrk -t2 -c"$connections" -d"${seconds}s" --timeout 10s --latency \
    -s "$root/benches/wrk/post-application.lua" "$url" >"$dir/wrk-$connections" 2>&1
  read -r shed1 within1 < <(shed)
  python3 - "$dir/wrk-$connections" "$dir/status-$connections" "$seconds" "$connections" \
    "${sustainable:-0}" "$shed0" "$within0" "$shed1" "$within1" "$(memory)" <<'PY' | tee "$dir/row"
import re, sys
wrk, status_file, seconds, connections, sustainable = sys.argv[1:6]
shed0, within0, shed1, within1 = map(float, sys.argv[6:10])
memory = sys.argv[10]
text = open(wrk).read()
seconds = float(seconds)
statuses = {}
for line in open(status_file):
    s, n = line.split()
    statuses[int(s)] = int(n)
def pct(name):
    m = re.search(rf"^\s+{name}%\s+(\S+)", text, re.M)
    return m.group(1) if m else "?"
mx = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", text)
total = sum(statuses.values())
ok = statuses.get(201, 0)
s = float(sustainable) or ok / seconds
other = {k: v for k, v in statuses.items() if k not in (201, 503)}
errors = re.search(r"Socket errors:.*", text)
shed = shed1 - shed0
within = (within1 - within0) / shed * 100 if shed else 100.0
print(f"| {connections} | {total/seconds:,.0f} | {ok/seconds:,.0f} | {ok/seconds/s*100:.0f}% | "
      f"{statuses.get(503,0)/seconds:,.0f} | {other or '-'}{' ' + errors.group(0) if errors else ''} | "
      f"{pct(50)} / {pct(99)} / {mx.group(1) if mx else '?'} | {within:.2f}% of {shed:.0f} | {memory} |")
PY
  if [ -z "$sustainable" ]; then
    sustainable=$(awk -v s="$seconds" '$1 == 201 { print $2 / s }' "$dir/status-64")
  fi
done
