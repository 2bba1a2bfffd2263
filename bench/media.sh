#!/usr/bin/env bash
# Media benchmark: anchored RTP, Switchboard vs rtpengine, on 127.0.0.1.
# N concurrent G.711 calls, each carrying 20 ms PCMU RTP both ways (50
# packets/s per direction), relayed by the server pinned to one core; the
# load generator (crates/bench-media) is every call's caller and callee,
# pinned to the other core. Switchboard gets its calls over SIP (INVITE ->
# 407 -> INVITE with credentials -> the bench Lua context dials the
# generator back -> 200 -> ACK) and must anchor the media (rewrite both
# SDPs to its own ports); rtpengine gets the same calls through its ng
# control protocol (offer, answer, delete), userspace forwarding only.
# Steps add calls to those already up; per step: packets forwarded per
# second, loss per direction, the jitter the relay added (p50/p99), the
# server's CPU and packets per CPU-second. Prints each server's highest N
# with under 0.1% loss, the ratios Switchboard / rtpengine and the goals.
# See bench/README.md.
#
#   bench/media.sh                   full run (about 4 to 5 minutes)
#   BENCH_QUICK=1 bench/media.sh     smoke run: two low, short steps per server
#
# Knobs (environment): BENCH_STEPS="250 500 1000 ..." (calls up),
# BENCH_WINDOW=8 (counted seconds per step), BENCH_WARMUP=1,
# BENCH_SETUP_RATE=200 (new calls/s), BENCH_LOSS_LIMIT=0.1 (percent),
# BENCH_STOP_AFTER=1 (failed steps before a ramp stops),
# BENCH_SERVERS="direct rtpengine switchboard" ("direct": no relay, the
# generator's own ceiling on its core right now), BENCH_NO_BUILD=1,
# SB_BIN=path, GEN_BIN=path, SERVER_CPU=1, GEN_CPU=0, BENCH_KEEP=1 (keep
# the work dir). Builds go to $CARGO_TARGET_DIR (default target/).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
SB_BIN="${SB_BIN:-$TARGET_DIR/release/switchboard}"
GEN_BIN="${GEN_BIN:-$TARGET_DIR/release/bench-media}"

QUICK="${BENCH_QUICK:-0}"
if [ "$QUICK" = 1 ]; then
  STEPS="${BENCH_STEPS:-100 250}"
  WINDOW="${BENCH_WINDOW:-3}"
else
  STEPS="${BENCH_STEPS:-250 500 1000 1500 2000 2500 3000}"
  WINDOW="${BENCH_WINDOW:-8}"
fi
WARMUP="${BENCH_WARMUP:-1}"
SETUP_RATE="${BENCH_SETUP_RATE:-200}"
LOSS_LIMIT="${BENCH_LOSS_LIMIT:-0.1}"
STOP_AFTER="${BENCH_STOP_AFTER:-1}"
SERVERS="${BENCH_SERVERS:-direct rtpengine switchboard}"
SERVER_CPU="${SERVER_CPU:-1}"
GEN_CPU="${GEN_CPU:-0}"
DOMAIN="bench.test"
CALLER="1100"
PASSWORD="pw-1100-x"
# Relay ports below Linux's ephemeral range (32768-60999), where the
# generator's own sockets are.
RTP_MIN=10000
RTP_MAX=29999
GOAL_CALLS=1000     # anchored calls on one core
GOAL_PPCS=1.0       # packets per CPU-second, x rtpengine's

WORK="$(mktemp -d -t switchboard-media.XXXXXX)"
SERVER_PID=""       # leader of the server's process group (setsid)
GEN_PID=""
BENCH_STARTED=$(date +%s)

log() { printf '%s\n' "$*" >&2; }
die() { log "media.sh: $*"; exit 1; }

# stop_server: SIGTERM to the server's process group, SIGKILL after 5 s.
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

stop_generator() {
  [ -n "$GEN_PID" ] || return 0
  kill -9 "$GEN_PID" 2>/dev/null || true
  wait "$GEN_PID" 2>/dev/null || true
  GEN_PID=""
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_generator
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

# --- tools ------------------------------------------------------------------

ensure_tools() {
  case " $SERVERS " in *" rtpengine "*)
    if ! command -v rtpengine >/dev/null; then
      local sudo=""
      [ "$(id -u)" -eq 0 ] || sudo="sudo"
      log "installing rtpengine-daemon (apt-get); its service is not used"
      $sudo apt-get update
      $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y rtpengine-daemon
    fi
    ;;
  esac
  command -v taskset >/dev/null || die "taskset (util-linux) is missing"
  command -v setsid >/dev/null || die "setsid (util-linux) is missing"
  command -v ss >/dev/null || die "ss (iproute2) is missing"
  local cpus
  cpus=$(nproc)
  [ "$cpus" -gt "$SERVER_CPU" ] && [ "$cpus" -gt "$GEN_CPU" ] \
    || die "needs CPUs $GEN_CPU and $SERVER_CPU (this machine has $cpus)"
  # Two sockets per call in the generator, four per call in the server.
  local top need
  top=$(echo "$STEPS" | tr ' ' '\n' | sort -n | tail -n1)
  need=$(( top * 4 + 1000 ))
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  [ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge "$need" ] \
    || die "open files limit $(ulimit -n) is below $need (${top} calls); raise the hard limit (ulimit -Hn)"
}

build() {
  if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    log "cargo build --release -p switchboard -p bench-media"
    (cd "$ROOT" && nice -n 19 cargo build --release --quiet -p switchboard -p bench-media) \
      || die "cargo build --release failed"
  fi
  [ -x "$GEN_BIN" ] || die "no load generator at $GEN_BIN"
  case " $SERVERS " in *" switchboard "*) [ -x "$SB_BIN" ] || die "no Switchboard binary at $SB_BIN" ;; esac
}

# free_udp_port: a UDP port on 127.0.0.1 nobody listens on.
free_udp_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(( 5100 + RANDOM % 4000 ))
    if ! ss -Hlun "sport = :$p" 2>/dev/null | grep -q .; then echo "$p"; return 0; fi
  done
  die "no free UDP port found"
}

# --- servers ------------------------------------------------------------------

# start_rtpengine: a plain foreground process (not the service), userspace
# forwarding only (no kernel table), one worker thread, ports RTP_MIN..RTP_MAX.
start_rtpengine() {
  SERVER_ADDR="127.0.0.1:$(free_udp_port)"
  local logf="$WORK/rtpengine.log"
  setsid taskset -c "$SERVER_CPU" rtpengine --config-file=none --foreground --table=-1 \
    --interface=127.0.0.1 --listen-ng="$SERVER_ADDR" --port-min="$RTP_MIN" --port-max="$RTP_MAX" \
    --num-threads=1 --delete-delay=0 --timeout=120 --log-stderr --log-level=3 \
    >"$logf" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 200); do
    if ss -Hlun "sport = :${SERVER_ADDR##*:}" 2>/dev/null | grep -q .; then return 0; fi
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 20 "$logf" >&2; SERVER_PID=""; return 1; }
    sleep 0.05
  done
  tail -n 20 "$logf" >&2
  return 1
}

# start_switchboard: extension CALLER in the bench context, whose route
# dials the generator's callee back: the caller dials m<i>p<port>, the
# context turns it into sip:m<i>@127.0.0.1:<port>.
start_switchboard() {
  mkdir -p "$WORK/dialplans" "$WORK/plugins"
  cat >"$WORK/dialplans/bench.lua" <<'LUA'
-- bench/media.sh: call i dials m<i>p<port>; ring the load generator's
-- callee at sip:m<i>@127.0.0.1:<port> and bridge.
function route(call)
  local i, port = call.request_uri.user:match("^m(%d+)p(%d+)$")
  if not i then
    call:reject(404, "Not Found")
    return
  end
  local r = call:dial("sip:m" .. i .. "@127.0.0.1:" .. port, { timeout = 10 })
  if r.status ~= "answered" and r.status ~= "cancelled" then
    call:reject(503, "Service Unavailable")
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
plugins = "$WORK/plugins"

[security]
digest_algorithms = ["MD5"]
ban_after_failures = 0

[registrar]
qualify_interval = "0s"

[media]
bind = "127.0.0.1"
rtp_ports = "$RTP_MIN-$RTP_MAX"
# the steps pause RTP while the next calls are set up
rtp_timeout = "120s"

[[extension]]
id = "$CALLER"
password = "$PASSWORD"
context = "bench"
TOML
  local logf="$WORK/switchboard.log"
  (cd "$WORK" && exec setsid taskset -c "$SERVER_CPU" "$SB_BIN" run --config "$WORK/switchboard.toml") \
    >/dev/null 2>"$logf" &
  SERVER_PID=$!
  local port=""
  for _ in $(seq 1 300); do
    port=$(sed -n 's/.*SIP listening on udp:127\.0\.0\.1:\([0-9]*\).*/\1/p' "$logf" | head -n1)
    if [ -n "$port" ]; then SERVER_ADDR="127.0.0.1:$port"; return 0; fi
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 20 "$logf" >&2; SERVER_PID=""; return 1; }
    sleep 0.05
  done
  tail -n 20 "$logf" >&2
  return 1
}

# start_direct: no server; the generator's sockets talk to each other.
start_direct() {
  SERVER_ADDR=""
  SERVER_PID=""
}

# --- run --------------------------------------------------------------------

declare -A MAX_N PPCS_AT P99_AT CPU_AT PPS_AT FAILED NOTE
STEPS_CSV=$(echo "$STEPS" | tr -s ' ' ',')

# run_server NAME: start it, run the generator's ramp, stop it; the
# generator's STEP lines go to $WORK/NAME.steps.
run_server() {
  local name=$1 mode rc=0
  log ""
  log "== $name (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  FAILED[$name]=""
  NOTE[$name]=""
  if ! "start_$name"; then
    FAILED[$name]="did not start"
    log "$name: did not start"
    return 0
  fi
  mode=$name
  local target=()
  [ -z "$SERVER_ADDR" ] || target=(--server "$SERVER_ADDR" --server-pid "$SERVER_PID")
  taskset -c "$GEN_CPU" "$GEN_BIN" --mode "$mode" "${target[@]}" \
    --user "$CALLER" --password "$PASSWORD" --domain "$DOMAIN" --steps "$STEPS_CSV" \
    --setup-rate "$SETUP_RATE" --warmup "$WARMUP" --window "$WINDOW" --loss-limit "$LOSS_LIMIT" \
    --stop-after "$STOP_AFTER" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  GEN_PID=$!
  wait "$GEN_PID" || rc=$?
  GEN_PID=""
  grep -v '^STEP \|^RESULT ' "$WORK/$name.out" || true
  cat "$WORK/$name.err" >&2
  grep '^STEP ' "$WORK/$name.out" >"$WORK/$name.steps" || true
  if [ -n "$SERVER_PID" ] && ! kill -0 "$SERVER_PID" 2>/dev/null; then
    log "$name: the server exited during the run; its log:"
    tail -n 20 "$WORK/$name.log" >&2 2>/dev/null || true
    FAILED[$name]="server exited"
  fi
  stop_server
  case $rc in
    0) ;;
    3) FAILED[$name]="did not anchor media"
       log ""
       log "!!! $name did not anchor media: the SDP reached the other side unchanged, so RTP would"
       log "!!! go generator to generator directly. Nothing was measured for $name."
       ;;
    2) FAILED[$name]="call set-up failed"
       log "$name: call set-up failed; server log: $WORK/$name.log" ;;
    *) FAILED[$name]="generator failed ($rc)" ;;
  esac
  [ -z "${FAILED[$name]}" ] || return 0
  local res
  res=$(grep '^RESULT ' "$WORK/$name.out" | tail -n1)
  MAX_N[$name]=$(field "$res" max_n)
  local last_n
  last_n=$(tail -n1 "$WORK/$name.steps" | tr ' ' '\n' | sed -n 's/^n=//p')
  if [ "$(tail -n1 "$WORK/$name.steps" | tr ' ' '\n' | sed -n 's/^pass=//p')" = 1 ]; then
    NOTE[$name]="passed the highest step ($last_n calls): its limit is above it"
  elif [ "$(tail -n1 "$WORK/$name.steps" | tr ' ' '\n' | sed -n 's/^gen_saturated=//p')" = 1 ]; then
    NOTE[$name]="the generator was saturated (or starved of its core) at the failing step ($last_n calls): the limit may be the generator's"
  fi
  [ "$name" != direct ] || NOTE[$name]="no relay: the generator's own ceiling (${NOTE[$name]:-})"
}

# field LINE KEY: KEY's value in a "k=v k=v" line.
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n1; }

# step_field NAME N KEY: KEY at step N of server NAME.
step_field() { field "$(grep " n=$2 " "$WORK/$1.steps" 2>/dev/null | head -n1)" "$3"; }

ensure_tools
build
log "work dir: $WORK; steps: $STEPS calls; ${WINDOW} s counted per step; server on CPU $SERVER_CPU, generator on CPU $GEN_CPU"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for server in $SERVERS; do run_server "$server"; done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- summary ------------------------------------------------------------------

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'; }

echo ""
echo "== summary (load average before $LOAD_BEFORE, after $LOAD_AFTER; $(nproc) CPUs)"
printf '%-12s %8s %10s %12s %9s %12s  %s\n' server "max N" "pkts/s" "pkts/CPU-s" "srv cpu" "jitter p99" "note"
for server in $SERVERS; do
  if [ -n "${FAILED[$server]}" ]; then
    printf '%-12s %s\n' "$server" "FAILED: ${FAILED[$server]}"
    continue
  fi
  n=${MAX_N[$server]}
  if [ "$n" = 0 ]; then
    printf '%-12s %8s  %s\n' "$server" 0 "no step passed"
    continue
  fi
  printf '%-12s %8s %10s %12s %8s%% %10s ms  %s\n' "$server" "$n" "$(step_field "$server" "$n" pps)" \
    "$(step_field "$server" "$n" ppcs)" "$(step_field "$server" "$n" cpu_pct)" \
    "$(awk -v u="$(step_field "$server" "$n" p99_us)" 'BEGIN { printf "%.2f", u / 1000 }')" "${NOTE[$server]}"
done

if [ -z "${FAILED[switchboard]-x}" ] && [ -z "${FAILED[rtpengine]-x}" ]; then
  sb=${MAX_N[switchboard]} re=${MAX_N[rtpengine]}
  echo "  max N: switchboard $sb, rtpengine $re: $(ratio "$sb" "$re") x rtpengine"
  # Packets per CPU-second at the highest step both passed (the CPU per
  # packet falls as the load rises, so compare at the same N).
  common=""
  for n in $STEPS; do
    if [ "$(step_field switchboard "$n" pass)" = 1 ] && [ "$(step_field rtpengine "$n" pass)" = 1 ]; then
      common=$n
      a=$(step_field switchboard "$n" ppcs) b=$(step_field rtpengine "$n" ppcs)
      echo "  $n calls: pkts/CPU-s switchboard $a, rtpengine $b ($(ratio "$a" "$b") x);" \
        "cpu switchboard $(step_field switchboard "$n" cpu_pct)%, rtpengine $(step_field rtpengine "$n" cpu_pct)%;" \
        "jitter p99 switchboard $(step_field switchboard "$n" p99_us) us, rtpengine $(step_field rtpengine "$n" p99_us) us"
    fi
  done
  if [ -n "$common" ]; then
    a=$(step_field switchboard "$common" ppcs) b=$(step_field rtpengine "$common" ppcs)
    echo "  pkts/CPU-s at $common calls, the highest step both passed: $(ratio "$a" "$b") x rtpengine"
    PPCS_RATIO=$(ratio "$a" "$b")
  else
    PPCS_RATIO="n/a"
  fi
  for s in switchboard rtpengine; do
    p=$(step_field "$s" "${MAX_N[$s]}" ppcs)
    if [ -n "$p" ] && [ "$p" != n/a ]; then
      echo "  $s: $p pkts/CPU-s at its max N: about $(awk -v p="$p" 'BEGIN { printf "%d", p / 100 }') calls (100 pkts/s each) on a fully busy core (estimate)"
    fi
  done
  verdict() { case $1 in 1) echo met ;; n/a) echo "not measured" ;; gen) echo "not measured (the generator saturated first)" ;; *) echo "NOT met" ;; esac; }
  calls_verdict=""
  top_step=$(echo "$STEPS" | tr ' ' '\n' | sort -n | tail -n1)
  if [ "$sb" -ge "$GOAL_CALLS" ]; then
    calls_verdict=1
  elif [ "$sb" = "$top_step" ]; then
    calls_verdict=n/a   # passed every step, all below the goal
  elif [ "$(tail -n1 "$WORK/switchboard.steps" | tr ' ' '\n' | sed -n 's/^gen_saturated=//p')" = 1 ]; then
    calls_verdict=gen
  fi
  echo "  goals: >= $GOAL_CALLS anchored calls per core: $(verdict "$calls_verdict");" \
    ">= ${GOAL_PPCS} x rtpengine's packets per CPU-second: $(verdict "$(awk -v r="$PPCS_RATIO" -v g="$GOAL_PPCS" 'BEGIN { if (r == "n/a") print "n/a"; else if (r + 0 >= g) print 1 }')")"
fi
echo "  (run took $(( $(date +%s) - BENCH_STARTED )) s)"
for server in $SERVERS; do [ -z "${FAILED[$server]}" ] || exit 1; done
exit 0
