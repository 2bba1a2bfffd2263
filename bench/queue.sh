#!/usr/bin/env bash
# Queue benchmark (issue 16): N callers waiting in one call queue with
# music on hold, Switchboard pinned to one core. The load generator
# (crates/bench-media, --mode queue) is every caller, on the other core:
# each dials in (INVITE -> 407 -> INVITE with credentials), the bench Lua
# context puts it in a queue with no agent (plugins/queue.lua), so it is
# answered and hears the default music class; the generator only
# receives RTP. Measured: the server's resident memory per waiting caller
# (VmRSS before the callers and with all of them waiting) and the MOH
# jitter at the receiver (each packet's kernel arrival time against its
# RTP timestamp, above the stream's minimum: p50/p99/max). Goals: at most
# 40 KB per waiting caller, p99 under 5 ms. See bench/README.md.
#
#   bench/queue.sh                  full run: 1,000 callers, 10 s counted
#   BENCH_QUICK=1 bench/queue.sh    smoke run: 50 callers, 3 s counted
#
# Knobs (environment): BENCH_CALLERS=1000, BENCH_WINDOW=10 (counted
# seconds), BENCH_SETTLE=3 (seconds after the last caller, before RSS is
# read and counting starts), BENCH_SETUP_RATE=200 (callers/s),
# BENCH_NO_BUILD=1, SB_BIN=path, GEN_BIN=path, SERVER_CPU=1, GEN_CPU=0,
# BENCH_KEEP=1 (keep the work dir). Builds go to $CARGO_TARGET_DIR
# (default target/).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
SB_BIN="${SB_BIN:-$TARGET_DIR/release/switchboard}"
GEN_BIN="${GEN_BIN:-$TARGET_DIR/release/bench-media}"

if [ "${BENCH_QUICK:-0}" = 1 ]; then
  CALLERS="${BENCH_CALLERS:-50}"
  WINDOW="${BENCH_WINDOW:-3}"
else
  CALLERS="${BENCH_CALLERS:-1000}"
  WINDOW="${BENCH_WINDOW:-10}"
fi
SETTLE="${BENCH_SETTLE:-3}"
SETUP_RATE="${BENCH_SETUP_RATE:-200}"
SERVER_CPU="${SERVER_CPU:-1}"
GEN_CPU="${GEN_CPU:-0}"
DOMAIN="bench.test"
CALLER="1100"
PASSWORD="pw-1100-x"
RTP_MIN=10000
RTP_MAX=29999
GOAL_KB=40        # per waiting caller
GOAL_P99_MS=5     # MOH jitter at the receiver

WORK="$(mktemp -d -t switchboard-queue.XXXXXX)"
SERVER_PID=""
BENCH_STARTED=$(date +%s)

log() { printf '%s\n' "$*" >&2; }
die() { log "queue.sh: $*"; exit 1; }

stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
  local i
  for i in $(seq 1 100); do
    kill -0 -- "-$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  kill -9 -- "-$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_server
  if [ "${BENCH_KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
    log "work directory kept: $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

command -v taskset >/dev/null || die "taskset (util-linux) is missing"
command -v setsid >/dev/null || die "setsid (util-linux) is missing"
cpus=$(nproc)
[ "$cpus" -gt "$SERVER_CPU" ] && [ "$cpus" -gt "$GEN_CPU" ] \
  || die "needs CPUs $GEN_CPU and $SERVER_CPU (this machine has $cpus)"
# One socket per caller in the generator, two per caller in the server.
need=$(( CALLERS * 2 + 1000 ))
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge "$need" ] \
  || die "open files limit $(ulimit -n) is below $need ($CALLERS callers); raise the hard limit (ulimit -Hn)"

if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  log "cargo build --release -p switchboard -p bench-media"
  (cd "$ROOT" && nice -n 19 cargo build --release --quiet -p switchboard -p bench-media) \
    || die "cargo build --release failed"
fi
[ -x "$SB_BIN" ] || die "no Switchboard binary at $SB_BIN"
[ -x "$GEN_BIN" ] || die "no load generator at $GEN_BIN"

# The bench context: every caller waits in queue "bench" (no agents, so
# nobody is ever rung), with the shipped plugins and sounds.
mkdir -p "$WORK/dialplans"
cat >"$WORK/dialplans/bench.lua" <<'LUA'
-- bench/queue.sh: every caller waits in one queue with music on hold.
local queue = require("queue")

queue.define("bench", { strategy = "ringall", max_wait = 3600 })

function route(call)
  if call.request_uri.user:match("^m%d+p%d+$") then
    queue.enter(call, "bench")
  else
    call:reject(404, "Not Found")
  end
end
LUA
cat >"$WORK/switchboard.toml" <<TOML
[sip]
listen = ["udp:127.0.0.1:0"]
domain = "$DOMAIN"

[admin]
listen = "127.0.0.1:0"

[log]
level = "warn,switchboard::server=info"

[storage]
backend = "memory"

[dialplan]
dir = "$WORK/dialplans"
plugins = "$ROOT/plugins"
sounds = "$ROOT/sounds"

[security]
digest_algorithms = ["MD5"]
ban_after_failures = 0

[registrar]
qualify_interval = "0s"

[media]
bind = "127.0.0.1"
rtp_ports = "$RTP_MIN-$RTP_MAX"
# the callers only listen
rtp_timeout = "600s"

[[extension]]
id = "$CALLER"
password = "$PASSWORD"
context = "bench"
TOML

logf="$WORK/switchboard.log"
(cd "$WORK" && exec setsid taskset -c "$SERVER_CPU" "$SB_BIN" run --config "$WORK/switchboard.toml") \
  >/dev/null 2>"$logf" &
SERVER_PID=$!
SERVER_ADDR=""
for _ in $(seq 1 300); do
  port=$(sed -n 's/.*SIP listening on udp:127\.0\.0\.1:\([0-9]*\).*/\1/p' "$logf" | head -n1)
  if [ -n "$port" ]; then SERVER_ADDR="127.0.0.1:$port"; break; fi
  kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 20 "$logf" >&2; die "Switchboard did not start"; }
  sleep 0.05
done
[ -n "$SERVER_ADDR" ] || { tail -n 20 "$logf" >&2; die "Switchboard did not start"; }

log "work dir: $WORK; $CALLERS callers, ${WINDOW} s counted; server on CPU $SERVER_CPU, generator on CPU $GEN_CPU (load average $(cut -d' ' -f1-3 /proc/loadavg))"
rc=0
taskset -c "$GEN_CPU" "$GEN_BIN" --mode queue --server "$SERVER_ADDR" --server-pid "$SERVER_PID" \
  --user "$CALLER" --password "$PASSWORD" --domain "$DOMAIN" --steps "$CALLERS" \
  --setup-rate "$SETUP_RATE" --warmup "$SETTLE" --window "$WINDOW" \
  >"$WORK/queue.out" 2>"$WORK/queue.err" || rc=$?
grep -v '^QUEUE \|^RESULT ' "$WORK/queue.out" || true
cat "$WORK/queue.err" >&2
kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 20 "$logf" >&2; die "the server exited during the run"; }
[ "$rc" = 0 ] || { tail -n 20 "$logf" >&2; die "the generator failed ($rc)"; }

line=$(grep '^QUEUE ' "$WORK/queue.out" | tail -n1)
field() { echo "$line" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -n1; }
kib=$(field kib_per_caller)
p99=$(field p99_ms)
hearing=$(field hearing)
echo ""
echo "== summary ($CALLERS callers waiting, $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg))"
echo "  RSS per waiting caller: $kib KiB (goal <= $GOAL_KB KB)"
echo "  MOH jitter p99 at the receiver: $p99 ms (goal < $GOAL_P99_MS ms); p50 $(field p50_ms) ms, max $(field max_ms) ms"
echo "  callers hearing music: $hearing of $CALLERS; packets $(field packets) of $(field expected) expected"
verdict() { awk -v v="$1" -v g="$2" -v op="$3" 'BEGIN { if (v == "" || v == "n/a") print "not measured"; else if ((op == "le" && v + 0 <= g) || (op == "lt" && v + 0 < g)) print "met"; else print "NOT met" }'; }
# KiB against the goal in KB (1 KiB = 1.024 KB).
echo "  goals: <= $GOAL_KB KB per caller: $(verdict "$(awk -v k="$kib" 'BEGIN { if (k == "n/a") print "n/a"; else printf "%.2f", k * 1.024 }')" "$GOAL_KB" le);" \
  "jitter p99 < $GOAL_P99_MS ms: $(verdict "$p99" "$GOAL_P99_MS" lt)"
echo "  (run took $(( $(date +%s) - BENCH_STARTED )) s)"
[ "$hearing" = "$CALLERS" ] || exit 1
exit 0
