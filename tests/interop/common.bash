# Shared helpers for the interop scripts: start the release binary on
# 127.0.0.1 port 0 with a temporary config, find its ports from the log,
# stop it with SIGTERM and check it exited cleanly.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SB_BIN="${SB_BIN:-$ROOT/target/release/switchboard}"
WORK="$(mktemp -d)"
SB_PID=""

cleanup() {
  if [ -n "$SB_PID" ] && kill -0 "$SB_PID" 2>/dev/null; then kill -9 "$SB_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; [ -f "$WORK/sb.log" ] && tail -n 40 "$WORK/sb.log" >&2; exit 1; }

# The admin API's bearer token (admin.token) of every server started here.
SB_ADMIN_TOKEN=interop-admin-token-0123456789

# start_server [extra [sip] toml] [more toml at the end]: UDP+TCP on
# 127.0.0.1:0, admin on 127.0.0.1:0, storage in the work directory, the
# repository's dialplans/ and plugins/ (default.lua routes the calls).
start_server() {
  cat > "$WORK/switchboard.toml" <<TOML
[sip]
listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]
domain = "interop.test"
${1:-}

[admin]
listen = "127.0.0.1:0"
token = "$SB_ADMIN_TOKEN"

[storage]
path = "$WORK/var/switchboard.redb"

[dialplan]
dir = "$ROOT/dialplans"
plugins = "$ROOT/plugins"
sounds = "$ROOT/sounds"
voicemail = "$WORK/var/voicemail"
${2:-}
TOML
  (cd "$WORK" && exec "$SB_BIN" run --config "$WORK/switchboard.toml") >/dev/null 2>"$WORK/sb.log" &
  SB_PID=$!
  for _ in $(seq 1 200); do
    SB_UDP_PORT=$(sed -n 's/.*SIP listening on udp:127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/sb.log" | head -n1)
    SB_TCP_PORT=$(sed -n 's/.*SIP listening on tcp:127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/sb.log" | head -n1)
    SB_ADMIN=$(sed -n 's/.*admin listening on http:\/\/\([0-9.:]*\).*/\1/p' "$WORK/sb.log" | head -n1)
    if [ -n "$SB_UDP_PORT" ] && [ -n "$SB_TCP_PORT" ] && [ -n "$SB_ADMIN" ]; then return 0; fi
    kill -0 "$SB_PID" 2>/dev/null || fail "switchboard exited during start-up"
    sleep 0.05
  done
  fail "switchboard did not log its listeners within 10 s"
}

# admin_get PATH: the body of GET http://admin/PATH with the bearer token
# (bash /dev/tcp, no curl needed).
admin_get() {
  local host=${SB_ADMIN%:*} port=${SB_ADMIN##*:}
  exec 4<>"/dev/tcp/$host/$port"
  printf 'GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n' \
    "$1" "$SB_ADMIN" "$SB_ADMIN_TOKEN" >&4
  sed '1,/^\r$/d' <&4
  exec 4<&- 4>&-
}

# stop_server: SIGTERM, must exit 0 within 10 s.
stop_server() {
  kill -TERM "$SB_PID"
  for _ in $(seq 1 200); do
    if ! kill -0 "$SB_PID" 2>/dev/null; then
      local rc=0; wait "$SB_PID" || rc=$?
      SB_PID=""
      [ "$rc" -eq 0 ] || fail "switchboard exited with $rc after SIGTERM"
      return 0
    fi
    sleep 0.05
  done
  fail "switchboard did not stop within 10 s of SIGTERM"
}

# sipp_options TRANSPORT(u1|t1) PORT CALLS RATE: every OPTIONS must get 200.
sipp_options() {
  local transport=$1 port=$2 calls=$3 rate=$4
  sipp "127.0.0.1:$port" -sf "$ROOT/tests/interop/scenarios/options.xml" -t "$transport" \
    -i 127.0.0.1 -p 0 -m "$calls" -r "$rate" -timeout 30s -timeout_error -nostdin \
    -trace_err -error_file "$WORK/sipp_err_$transport.log" >"$WORK/sipp_$transport.out" 2>&1 \
    || { cat "$WORK/sipp_$transport.out" "$WORK/sipp_err_$transport.log" 2>/dev/null | tail -n 40 >&2; fail "SIPp OPTIONS over $transport"; }
}
