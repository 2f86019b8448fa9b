#!/usr/bin/env bash
# Schemathesis against the real server's OpenAPI document (docs/RULES.md#bad-input): every
# generated request must get an answer that is not 5xx and that conforms to the document
# (status code, content type, headers, response schema).
#
#   bash tests/schemathesis/run.sh            # uses $OCHERED_BIN or target/debug/ochered
#
# Needs schemathesis (pinned below) in a virtualenv; installs it there if missing.
# ST_MAX_EXAMPLES / ST_MAX_TIME tune the run (CI uses the defaults).
set -euo pipefail
cd "$(dirname "$0")/../.."
ST_VERSION=4.32.5
VENV=${ST_VENV:-/var/tmp/ochered-st}
if ! "$VENV/bin/st" --version 2>/dev/null | grep -q "$ST_VERSION"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "schemathesis==$ST_VERSION"
fi
BIN=${OCHERED_BIN:-${CARGO_TARGET_DIR:-target}/debug/ochered}
[ -x "$BIN" ] || cargo build --bin ochered
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export OCHERED_JWT_SECRET=schemathesis-secret
"$BIN" serve --listen "127.0.0.1:$port" --database-url "sqlite://$work/st.db" >"$work/server.log" 2>&1 &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break; sleep 0.2; done
token=$("$BIN" token --role admin --sub schemathesis)
cd tests/schemathesis
"$VENV/bin/st" --no-color run "http://127.0.0.1:$port/api/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "${ST_MAX_EXAMPLES:-25}" \
  --workers 2 \
  --request-timeout 10 \
  --suppress-health-check all
