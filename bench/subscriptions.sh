#!/usr/bin/env bash
# Subscriptions benchmark: busy lamps under call load, on 127.0.0.1.
# Extensions 1000..1000+N-1 register (one UAS socket answers all their
# calls: 180 at once, 200 after BENCH_RING_MS); BENCH_SUBS dialog-package
# subscriptions (RFC 4235) are spread evenly over them from
# BENCH_WATCHERS sockets; then calls start at BENCH_RATE per second for
# BENCH_SECONDS (talk BENCH_TALK_MS, BYE from the caller). Every lamp
# change each watcher is told of is timed from the SIP event that caused it
# (the callee's INVITE arriving, its 200 leaving, the caller's BYE leaving)
# to its NOTIFY arriving; prints the p50, p99 and max of that latency, the
# calls and NOTIFYs, and the server's memory before and after subscribing.
# Switchboard is pinned to one core (SERVER_CPU), the load to another.
#
#   bench/subscriptions.sh                 full run: 1,000 extensions, 10,000 subscriptions, 100 calls/s for 30 s
#   BENCH_QUICK=1 bench/subscriptions.sh   smoke run: 20 extensions, 100 subscriptions, 5 calls/s for 3 s
#
# Knobs: BENCH_EXTENSIONS, BENCH_SUBS, BENCH_WATCHERS, BENCH_RATE,
# BENCH_SECONDS, BENCH_RING_MS, BENCH_TALK_MS, BENCH_NO_BUILD=1, SB_BIN=path,
# SERVER_CPU=1, LOAD_CPU=0, BENCH_KEEP=1. Needs python3 (standard library),
# taskset (util-linux) and cargo.
set -euo pipefail
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SB_BIN="${SB_BIN:-$ROOT/target/release/switchboard}"
if [ "${BENCH_QUICK:-0}" = 1 ]; then
  N_EXT="${BENCH_EXTENSIONS:-20}"; N_SUBS="${BENCH_SUBS:-100}"; RATE="${BENCH_RATE:-5}"; SECONDS_="${BENCH_SECONDS:-3}"
else
  N_EXT="${BENCH_EXTENSIONS:-1000}"; N_SUBS="${BENCH_SUBS:-10000}"; RATE="${BENCH_RATE:-100}"; SECONDS_="${BENCH_SECONDS:-30}"
fi
[ "$N_EXT" -le 1000 ] || { echo "BENCH_EXTENSIONS: at most 1000 (the demo dialplan dials 1000-1999)" >&2; exit 1; }
SERVER_CPU="${SERVER_CPU:-1}"
LOAD_CPU="${LOAD_CPU:-0}"
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 1; }

if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  (cd "$ROOT" && cargo build --release --quiet)
fi

WORK="$(mktemp -d /tmp/switchboard-bench.XXXXXX)"
SB_PID=""
cleanup() {
  [ -n "$SB_PID" ] && kill -9 "$SB_PID" 2>/dev/null || true
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "work files kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

pin() { if command -v taskset >/dev/null; then taskset -c "$1" "${@:2}"; else "${@:2}"; fi; }

{
  cat <<TOML
[sip]
listen = ["udp:127.0.0.1:0"]
domain = "bench.test"

[admin]
listen = "127.0.0.1:0"
token = "bench-admin-token-0123456789"

[storage]
backend = "memory"

[security]
digest_algorithms = ["MD5"]
udp_rate = 0

[registrar]
qualify_interval = "0s"

[dialplan]
dir = "$ROOT/dialplans"
plugins = "$ROOT/plugins"
TOML
  for i in $(seq 0 $((N_EXT - 1))); do
    printf '\n[[extension]]\nid = "%d"\npassword = "pw-%d-x"\n' $((1000 + i)) $((1000 + i))
  done
} > "$WORK/switchboard.toml"

(cd "$WORK" && exec taskset -c "$SERVER_CPU" "$SB_BIN" run --config "$WORK/switchboard.toml") >/dev/null 2>"$WORK/sb.log" &
SB_PID=$!
for _ in $(seq 1 200); do
  PORT=$(sed -n 's/.*SIP listening on udp:127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/sb.log" | head -n1)
  [ -n "$PORT" ] && break
  kill -0 "$SB_PID" 2>/dev/null || { cat "$WORK/sb.log" >&2; exit 1; }
  sleep 0.05
done
[ -n "$PORT" ] || { echo "switchboard did not start" >&2; cat "$WORK/sb.log" >&2; exit 1; }
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$SB_PID/status"; }
echo "switchboard on udp:127.0.0.1:$PORT (CPU $SERVER_CPU), RSS $(rss) KiB; $N_EXT extensions, $N_SUBS subscriptions, $RATE calls/s for ${SECONDS_}s"

N_EXT="$N_EXT" N_SUBS="$N_SUBS" N_WATCHERS="${BENCH_WATCHERS:-10}" RATE="$RATE" SECONDS="$SECONDS_" \
  RING_MS="${BENCH_RING_MS:-200}" TALK_MS="${BENCH_TALK_MS:-1000}" \
  pin "$LOAD_CPU" python3 "$ROOT/bench/subscriptions/load.py" 127.0.0.1 "$PORT" | tee "$WORK/result.txt"
echo "switchboard RSS after the run: $(rss) KiB"
grep -q "panicked" "$WORK/sb.log" && { echo "a panic was logged" >&2; exit 1; }
kill -TERM "$SB_PID"; wait "$SB_PID" || true; SB_PID=""
