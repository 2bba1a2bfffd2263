#!/usr/bin/env bash
# Calls benchmark: SIPp callers -> server -> SIPp callees, on 127.0.0.1.
# Each call: INVITE -> 407 -> ACK, INVITE with credentials -> 180 -> 200 ->
# ACK, pause, BYE -> 200. Switchboard routes every call through the Lua
# dialplan (dialplans/default.lua) as a B2BUA; Kamailio, in the same run,
# relays the same calls as a stateful record-routing proxy (tm + rr +
# registrar/usrloc + auth + dialog), the floor of what the signalling
# costs. Each server is pinned to one core and every SIPp process to the
# other. Prints, per server: the highest call rate with under 1% failed
# calls, the CPU per call there, and the memory per established call (the
# server's memory growth while 5,000 calls are up, divided by the calls
# up); then the ratios to Kamailio and the goals. See bench/README.md.
#
#   bench/calls.sh                   full run (about 5 to 8 minutes)
#   BENCH_QUICK=1 bench/calls.sh     smoke run: two low steps and 500 held calls per server
#
# Knobs (environment): BENCH_RATES="200 500 1000 ..." (total calls/s),
# BENCH_STEP_SECONDS=10, BENCH_CALL_MS=1000 (how long a call stays up in the
# ramp), BENCH_SERVERS="switchboard kamailio", BENCH_PAIRS=2 (caller/callee
# SIPp pairs, one extension each), BENCH_STOP_AFTER=2 (consecutive failed
# steps before a server's ramp stops), BENCH_HOLD_CALLS=5000,
# BENCH_HOLD_RATE=500 (calls/s while filling up the held calls; 0 skips the
# memory measurement), BENCH_STORAGE=memory|redb (Switchboard's storage),
# BENCH_NO_BUILD=1, SB_BIN=path, SERVER_CPU=1, SIPP_CPU=0, BENCH_KEEP=1 (keep
# the work dir).
set -euo pipefail
# Anchored calls hold four UDP sockets each (two RTP/RTCP pairs).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"
REGISTER_XML="$BENCH/scenarios/register.xml"
UAC_XML="$BENCH/scenarios/call-uac.xml"
UAS_XML="$BENCH/scenarios/call-uas.xml"
KAM_CFG="$BENCH/kamailio/calls.cfg"
SB_BIN="${SB_BIN:-$ROOT/target/release/switchboard}"

QUICK="${BENCH_QUICK:-0}"
if [ "$QUICK" = 1 ]; then
  RATES="${BENCH_RATES:-100 200}"
  STEP_SECONDS="${BENCH_STEP_SECONDS:-3}"
  HOLD_CALLS="${BENCH_HOLD_CALLS:-500}"
  HOLD_RATE="${BENCH_HOLD_RATE:-250}"
else
  RATES="${BENCH_RATES:-200 500 1000 1500 2000 2500 3000 4000 5000}"
  STEP_SECONDS="${BENCH_STEP_SECONDS:-10}"
  HOLD_CALLS="${BENCH_HOLD_CALLS:-5000}"
  HOLD_RATE="${BENCH_HOLD_RATE:-500}"
fi
CALL_MS="${BENCH_CALL_MS:-1000}"
SERVERS="${BENCH_SERVERS:-switchboard kamailio}"
NPAIRS="${BENCH_PAIRS:-2}"
STOP_AFTER="${BENCH_STOP_AFTER:-2}"
STORAGE="${BENCH_STORAGE:-memory}"
SERVER_CPU="${SERVER_CPU:-1}"
SIPP_CPU="${SIPP_CPU:-0}"
DOMAIN="bench.test"
CALLER_BASE=1100    # pair i: caller 1100+i calls callee 1200+i
CALLEE_BASE=1200
RECV_TIMEOUT_MS=5000
GOAL_RATE=1000      # calls/s on one core through Lua routing
GOAL_KB=30          # KB per established call

WORK="$(mktemp -d -t switchboard-calls.XXXXXX)"
SERVER_PID=""       # leader of the server's process group (setsid)
SIPP_PIDS=()        # callers of the current step
UAS_PIDS=()         # callees, for as long as a server runs
BENCH_STARTED=$(date +%s)

log() { printf '%s\n' "$*" >&2; }
die() { log "calls.sh: $*"; exit 1; }

kill_list() {
  local p
  for p in "$@"; do
    [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true
  done
  for p in "$@"; do
    [ -n "$p" ] && wait "$p" 2>/dev/null || true
  done
}
stop_sipp() { kill_list "${SIPP_PIDS[@]:-}"; SIPP_PIDS=(); }
stop_callees() { kill_list "${UAS_PIDS[@]:-}"; UAS_PIDS=(); }

# stop_server: SIGTERM to the server's own process group (Kamailio's main
# process and its workers), SIGKILL after 5 s.
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
  stop_sipp
  stop_callees
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
  if ! command -v sipp >/dev/null || ! command -v kamailio >/dev/null; then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    log "installing sip-tester and kamailio (apt-get)"
    $sudo apt-get update
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y sip-tester kamailio
  fi
  command -v taskset >/dev/null || die "taskset (util-linux) is missing"
  command -v setsid >/dev/null || die "setsid (util-linux) is missing"
  KAM_MODULES="${KAM_MODULES:-}"
  if [ -z "$KAM_MODULES" ]; then
    local so
    so=$(ls /usr/lib/*/kamailio/modules/dialog.so /usr/lib/kamailio/modules/dialog.so \
      /usr/lib64/kamailio/modules/dialog.so /usr/local/lib64/kamailio/modules/dialog.so 2>/dev/null | head -n1 || true)
    [ -n "$so" ] || die "kamailio's dialog.so not found (set KAM_MODULES)"
    KAM_MODULES="$(dirname "$so")"
  fi
  local cpus
  cpus=$(nproc)
  [ "$cpus" -gt "$SERVER_CPU" ] && [ "$cpus" -gt "$SIPP_CPU" ] \
    || die "needs CPUs $SIPP_CPU and $SERVER_CPU (this machine has $cpus)"
}

build_switchboard() {
  [ -f "$ROOT/dialplans/default.lua" ] || die "no dialplans/default.lua: Switchboard cannot route calls"
  if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
  fi
  [ -x "$SB_BIN" ] || die "no Switchboard binary at $SB_BIN"
}

# free_udp_port: a UDP port on 127.0.0.1 nobody listens on.
free_udp_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(( 20000 + RANDOM % 20000 ))
    if ! ss -Hlun "sport = :$p" 2>/dev/null | grep -q .; then echo "$p"; return 0; fi
  done
  die "no free UDP port found"
}

# --- servers ------------------------------------------------------------------

# start_switchboard: the pairs' extensions with password pw-N-x, routing
# by the repository's dialplans/ and plugins/, the SIP port read from the log.
start_switchboard() {
  local storage
  if [ "$STORAGE" = memory ]; then
    storage='backend = "memory"'
  else
    rm -f "$WORK/bench.redb"
    storage="path = \"$WORK/bench.redb\""
  fi
  {
    cat <<TOML
[sip]
listen = ["udp:127.0.0.1:0"]
domain = "$DOMAIN"

[admin]
listen = "127.0.0.1:0"

[storage]
$storage

[dialplan]
dir = "$ROOT/dialplans"
plugins = "$ROOT/plugins"

[media]
# Every call is anchored: two RTP/RTCP pairs per call, so the held calls
# need 2 x HOLD_CALLS pairs (below Linux's ephemeral range).
bind = "127.0.0.1"
rtp_ports = "10000-32000"

[security]
digest_algorithms = ["MD5"]
# overload failures must not ban 127.0.0.1
ban_after_failures = 0

[registrar]
# no OPTIONS pings to the callees: the SIPp UAS answers only calls, and
# Kamailio does not ping either
qualify_interval = "0s"
TOML
    local i
    for i in $(seq 0 $((NPAIRS - 1))); do
      printf '\n[[extension]]\nid = "%s"\npassword = "pw-%s-x"\n' $((CALLER_BASE + i)) $((CALLER_BASE + i))
      printf '\n[[extension]]\nid = "%s"\npassword = "pw-%s-x"\n' $((CALLEE_BASE + i)) $((CALLEE_BASE + i))
    done
  } > "$WORK/switchboard.toml"
  local logf="$WORK/switchboard.log"
  (cd "$WORK" && exec setsid taskset -c "$SERVER_CPU" "$SB_BIN" run --config "$WORK/switchboard.toml") \
    >/dev/null 2>"$logf" &
  SERVER_PID=$!
  SERVER_PORT=""
  for _ in $(seq 1 300); do
    SERVER_PORT=$(sed -n 's/.*SIP listening on udp:127\.0\.0\.1:\([0-9]*\).*/\1/p' "$logf" | head -n1)
    [ -n "$SERVER_PORT" ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 20 "$logf" >&2; SERVER_PID=""; return 1; }
    sleep 0.05
  done
  tail -n 20 "$logf" >&2
  return 1
}

start_kamailio() {
  SERVER_PORT=$(free_udp_port)
  local logf="$WORK/kamailio.log"
  mkdir -p "$WORK/kamailio-run"
  # -DD: fork the workers but stay in the foreground; -E: log to stderr.
  setsid taskset -c "$SERVER_CPU" kamailio -DD -E -f "$KAM_CFG" -L "$KAM_MODULES" \
    -l "udp:127.0.0.1:$SERVER_PORT" -m 1024 -M 16 -w "$WORK/kamailio-run" -Y "$WORK/kamailio-run" \
    >"$logf" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 200); do
    if ss -Hlun "sport = :$SERVER_PORT" 2>/dev/null | grep -q .; then sleep 0.3; return 0; fi
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 20 "$logf" >&2; SERVER_PID=""; return 1; }
    sleep 0.05
  done
  tail -n 20 "$logf" >&2
  return 1
}

# server_mem_kb: the server's memory. Switchboard (one process): VmRSS.
# Kamailio (several processes sharing one shared-memory pool): the sum of
# their Pss (proportional set size), which counts each shared page once.
server_mem_kb() {
  local p total=0 v
  if [ "$1" = switchboard ]; then
    awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status"
    return
  fi
  for p in $(pgrep -g "$SERVER_PID" 2>/dev/null); do
    v=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || true)
    total=$(( total + ${v:-0} ))
  done
  echo "$total"
}

# server_cpu_ticks: user+system clock ticks used so far by the server's
# process group (every thread and, for Kamailio, every process).
server_cpu_ticks() {
  local p total=0 t
  for p in $(pgrep -g "$SERVER_PID" 2>/dev/null); do
    # fields after the ")" of comm: state is 1st, utime 12th, stime 13th
    t=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }') || continue
    total=$(( total + ${t:-0} ))
  done
  echo "$total"
}
CLK_TCK=$(getconf CLK_TCK)

# --- SIPp ---------------------------------------------------------------------

# start_callees NAME: each pair's callee registers (REGISTER, 401, REGISTER
# with credentials, 200) from a fixed local port, then a SIPp UAS is started
# on that same port: the server sends INVITEs to the registered source
# address. The callees run until the server is stopped.
start_callees() {
  local name=$1 i ext port
  UAS_PIDS=()
  CALLEE_PORTS=()
  for i in $(seq 0 $((NPAIRS - 1))); do
    ext=$(( CALLEE_BASE + i ))
    port=$(free_udp_port)
    taskset -c "$SIPP_CPU" sipp "127.0.0.1:$SERVER_PORT" -sf "$REGISTER_XML" -t u1 -i 127.0.0.1 \
      -p "$port" -s "$ext" -au "$ext" -ap "pw-$ext-x" -m 1 -timeout 10s -timeout_error \
      -recv_timeout 3000 -nostdin -trace_msg -message_file "$WORK/$name-register-$ext.msg" >/dev/null 2>&1 \
      || { log "$name: callee $ext did not register:"; show_msgs "$WORK/$name-register-$ext.msg"; return 1; }
    taskset -c "$SIPP_CPU" sipp -sf "$UAS_XML" -t u1 -i 127.0.0.1 -p "$port" -s "$ext" \
      -recv_timeout 600000 -nostdin -trace_err -error_file "$WORK/$name-uas-$ext.err" \
      >"$WORK/$name-uas-$ext.out" 2>&1 &
    UAS_PIDS+=("$!")
    CALLEE_PORTS+=("$port")
  done
  # the UAS processes bind their ports before they are called
  for port in "${CALLEE_PORTS[@]}"; do
    for _ in $(seq 1 100); do
      ss -Hlun "sport = :$port" 2>/dev/null | grep -q . && break
      sleep 0.05
    done
  done
}

# show_msgs FILE: the start lines of a SIPp -trace_msg file, in order, with
# the direction ("sent" / "received").
show_msgs() {
  awk '/message sent/ { dir = "  -> " } /message received/ { dir = "  <- " }
    /^(SIP\/2\.0 |[A-Z]+ [^ ]+ SIP\/2\.0)/ { print dir $0 }' "$1" >&2 2>/dev/null || true
}

# start_caller PAIR RATE CALLS PAUSE_MS DIR: one caller SIPp in the background.
start_caller() {
  local i=$1 rate=$2 calls=$3 pause=$4 dir=$5 limit
  local caller=$(( CALLER_BASE + i )) callee=$(( CALLEE_BASE + i ))
  # open calls: rate x (pause + set-up), with room for slow answers
  limit=$(( rate * (pause / 1000 + 10) + 100 ))
  taskset -c "$SIPP_CPU" sipp "127.0.0.1:$SERVER_PORT" -sf "$UAC_XML" -t u1 -i 127.0.0.1 \
    -p "$(free_udp_port)" -s "$callee" -key caller "$caller" -au "$caller" -ap "pw-$caller-x" \
    -r "$rate" -rp 1000 -m "$calls" -l "$limit" -d "$pause" -recv_timeout "$RECV_TIMEOUT_MS" \
    -timeout "$(( calls / (rate > 0 ? rate : 1) + pause / 1000 + 60 ))s" -nostdin \
    -trace_stat -stf "$dir/stat-$i.csv" -fd 1 -trace_err -error_file "$dir/errors-$i.log" \
    >"$dir/sipp-$i.out" 2>&1 &
  SIPP_PIDS+=("$!")
}

# check_call NAME: one call from every pair must go through.
check_call() {
  local name=$1 i caller callee f
  for i in $(seq 0 $((NPAIRS - 1))); do
    caller=$(( CALLER_BASE + i )); callee=$(( CALLEE_BASE + i ))
    f="$WORK/$name-check-$caller.msg"
    taskset -c "$SIPP_CPU" sipp "127.0.0.1:$SERVER_PORT" -sf "$UAC_XML" -t u1 -i 127.0.0.1 \
      -p "$(free_udp_port)" -s "$callee" -key caller "$caller" -au "$caller" -ap "pw-$caller-x" \
      -m 1 -d 200 -recv_timeout "$RECV_TIMEOUT_MS" -timeout 20s -timeout_error -nostdin \
      -trace_msg -message_file "$f" >/dev/null 2>&1 \
      || { log "$name: a call from $caller to $callee failed; the caller's messages:"; show_msgs "$f"; return 1; }
  done
}

# csv_field FILE NAME: NAME's value in the last row of a SIPp -trace_stat file.
csv_field() {
  awk -F';' -v name="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) col = i; next }
    { last = $col } END { print (col && last != "") ? last : 0 }' "$1"
}

# SPAN_AWK (with -v n= -v a= -v hold=): a + n / (run time of a -trace_stat
# file less the last calls' hold time), the run time taken from the epoch
# seconds in StartTime and the last CurrentTime.
SPAN_AWK='NR > 1 { split($1, s, "\t"); split($3, c, "\t"); start = s[3]; now = c[3] }
  END { d = now - start - hold; printf "%.0f", (d > 0) ? a + n / d : a }'

# run_step NAME RATE: NPAIRS callers at RATE/NPAIRS calls/s each for
# STEP_SECONDS, each call up for CALL_MS; sets STEP_* results.
run_step() {
  local name=$1 rate=$2 i per calls dir
  per=$(( (rate + NPAIRS - 1) / NPAIRS ))
  calls=$(( per * STEP_SECONDS ))
  dir="$WORK/$name-$rate"
  mkdir -p "$dir"
  local t0 t1 cpu0 cpu1
  cpu0=$(server_cpu_ticks)
  t0=$(date +%s%N)
  SIPP_PIDS=()
  for i in $(seq 0 $((NPAIRS - 1))); do start_caller "$i" "$per" "$calls" "$CALL_MS" "$dir"; done
  local p
  for p in "${SIPP_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  SIPP_PIDS=()
  t1=$(date +%s%N)
  cpu1=$(server_cpu_ticks)
  local ok=0 retrans=0 f n achieved=0
  for i in $(seq 0 $((NPAIRS - 1))); do
    f="$dir/stat-$i.csv"
    [ -s "$f" ] || continue
    n=$(csv_field "$f" 'SuccessfulCall(C)')
    ok=$(( ok + n ))
    retrans=$(( retrans + $(csv_field "$f" 'Retransmissions(C)') ))
    # This caller's rate: its successes over its own run time, less the
    # hold time of its last calls.
    achieved=$(awk -F";" -v n="$n" -v a="$achieved" -v hold="$(( CALL_MS / 1000 ))" "$SPAN_AWK" "$f")
  done
  STEP_UNEXPECTED=$(cat "$dir"/errors-*.log 2>/dev/null | grep -a "Aborting call on unexpected message" \
    | grep -ao "received 'SIP/2.0 [0-9]*" \
    | awk '{ n[$3]++ } END { for (c in n) { printf "%s%sx%d", sep, c, n[c]; sep = " " } }' || true)
  local timeouts
  timeouts=$(cat "$dir"/errors-*.log 2>/dev/null | grep -ac "timeout" || true)
  [ "${timeouts:-0}" -gt 0 ] && STEP_UNEXPECTED="${STEP_UNEXPECTED:+$STEP_UNEXPECTED }timeoutx$timeouts"
  [ "${BENCH_KEEP:-0}" = 1 ] || rm -f "$dir"/errors-*.log
  local total=$(( calls * NPAIRS ))
  STEP_OK=$ok
  STEP_FAILED=$(( total - ok ))
  STEP_RETRANS=$retrans
  local ms=$(( (t1 - t0) / 1000000 ))
  local cpu_ms=$(( (cpu1 - cpu0) * 1000 / CLK_TCK ))
  STEP_CPU_PCT=$(( cpu_ms * 100 / (ms > 0 ? ms : 1) ))
  STEP_US_PER_CALL=$(( ok > 0 ? cpu_ms * 1000 / ok : 0 ))
  STEP_ACHIEVED=${achieved%.*}
  STEP_FAIL_PCT=$(awk -v f="$STEP_FAILED" -v t="$total" 'BEGIN { printf "%.2f", t ? 100 * f / t : 100 }')
  if [ $(( STEP_FAILED * 100 )) -lt "$total" ] && [ $(( STEP_ACHIEVED * 100 )) -ge $(( rate * 95 )) ]; then
    STEP_PASS=1
  else
    STEP_PASS=0
  fi
}

# ramp NAME: rising rates until STOP_AFTER consecutive failed steps.
declare -A BEST BEST_US MEM_KB HELD MEM_NOTE FAILED US_AT
declare -A LABEL=([switchboard]="switchboard (Lua)" [kamailio]="kamailio (proxy)")
ramp() {
  local name=$1 rate fails=0 best=0 best_us=0
  printf '%-18s %8s %9s %8s %7s %7s %8s %5s %8s %-6s %s\n' "${LABEL[$name]}" "target/s" "achieved" "ok" \
    "failed" "fail%" "retrans" "cpu%" "us/call" "result" "failures"
  for rate in $RATES; do
    run_step "$name" "$rate"
    printf '%-18s %8d %9d %8d %7d %7s %8d %5d %8d %-6s %s\n' "" "$rate" "$STEP_ACHIEVED" "$STEP_OK" \
      "$STEP_FAILED" "$STEP_FAIL_PCT" "$STEP_RETRANS" "$STEP_CPU_PCT" "$STEP_US_PER_CALL" \
      "$([ "$STEP_PASS" = 1 ] && echo pass || echo FAIL)" "$STEP_UNEXPECTED"
    if [ "$STEP_PASS" = 1 ]; then
      best=$rate; best_us=$STEP_US_PER_CALL; fails=0
      US_AT[$name.$rate]=$STEP_US_PER_CALL
    else
      fails=$(( fails + 1 ))
      [ "$fails" -ge "$STOP_AFTER" ] && break
    fi
    sleep $(( CALL_MS / 1000 + 2 ))   # let calls and transactions drain between steps
  done
  BEST[$name]=$best
  BEST_US[$name]=$best_us
}

# hold NAME: HOLD_CALLS calls set up at HOLD_RATE and held; the server's
# memory before, while they are all up, and after they ended. The growth
# includes the set-up's completed transactions, which RFC 3261 keeps for up
# to 64*T1 = 32 s (Kamailio's tm for 5 s): freed memory stays in the
# process's heap, so a later sample would not show them go.
hold() {
  local name=$1 dir i per calls fill pause m0 m1 m2 up=0 f
  dir="$WORK/$name-hold"
  mkdir -p "$dir"
  per=$(( (HOLD_RATE + NPAIRS - 1) / NPAIRS ))
  calls=$(( (HOLD_CALLS + NPAIRS - 1) / NPAIRS ))
  fill=$(( (calls + per - 1) / per ))          # seconds to set them all up
  pause=$(( (fill + 12) * 1000 ))              # they stay up well past the sample
  sleep 1
  m0=$(server_mem_kb "$name")
  SIPP_PIDS=()
  for i in $(seq 0 $((NPAIRS - 1))); do start_caller "$i" "$per" "$calls" "$pause" "$dir"; done
  sleep $(( fill + 4 ))
  m1=$(server_mem_kb "$name")
  # calls up now: open calls of the callers (all set up by now, none ended yet)
  sleep 1.2    # a fresh statistics row (-fd 1)
  for i in $(seq 0 $((NPAIRS - 1))); do
    f="$dir/stat-$i.csv"
    [ -s "$f" ] && up=$(( up + $(csv_field "$f" 'CurrentCall') ))
  done
  local p
  for p in "${SIPP_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  SIPP_PIDS=()
  sleep 2
  m2=$(server_mem_kb "$name")
  local ok=0
  for i in $(seq 0 $((NPAIRS - 1))); do
    f="$dir/stat-$i.csv"
    [ -s "$f" ] && ok=$(( ok + $(csv_field "$f" 'SuccessfulCall(C)') ))
  done
  HELD[$name]=$up
  MEM_KB[$name]=$(awk -v a="$m0" -v b="$m1" -v n="$up" 'BEGIN { if (n > 0) printf "%.1f", (b - a) / n; else print "n/a" }')
  printf '%-18s memory %d KB before, %d KB with %d calls up (%s KB/call), %d KB after they ended; %d of %d calls completed\n' \
    "${LABEL[$name]}" "$m0" "$m1" "$up" "${MEM_KB[$name]}" "$m2" "$ok" "$(( calls * NPAIRS ))"
  MEM_NOTE[$name]=""
  if [ $(( up * 100 )) -lt $(( calls * NPAIRS * 99 )) ] || [ $(( ok * 100 )) -lt $(( calls * NPAIRS * 99 )) ]; then
    MEM_NOTE[$name]="(not all held calls were up: figure unreliable)"
  fi
}

# --- the run ----------------------------------------------------------------------

ensure_tools
case " $SERVERS " in *" switchboard "*) build_switchboard ;; esac

load=$(cut -d' ' -f1 /proc/loadavg)
echo "calls.sh: rates [$RATES] calls/s, ${STEP_SECONDS}s steps, calls up ${CALL_MS} ms, $NPAIRS caller/callee SIPp pairs on CPU $SIPP_CPU, server on CPU $SERVER_CPU; load average $load"
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
  echo "warning: the machine is not idle (load $load); figures will be low and noisy"
fi
echo "(a step passes with < 1% failed calls and >= 95% of the target rate; memory: $HOLD_CALLS calls held, set up at $HOLD_RATE/s)"
# Switchboard holds four UDP sockets per anchored call: a hard open-files
# limit below that (20,000 on some CI machines) fails the last held calls
# with 503 ("out of file descriptors" in its log), not for lack of ports.
nofile=$(ulimit -n)
if [ "$nofile" != unlimited ] && [ "$nofile" -lt $(( 4 * HOLD_CALLS + 64 )) ]; then
  echo "warning: open-files limit $nofile < 4 x $HOLD_CALLS held calls + 64: the last held calls will fail with 503 (raise the hard limit, or BENCH_HOLD_CALLS)"
fi
echo

for server in $SERVERS; do
  BEST[$server]=0; BEST_US[$server]=0; MEM_KB[$server]="n/a"; HELD[$server]=0; MEM_NOTE[$server]=""; FAILED[$server]=""
  case $server in
    switchboard) start_switchboard || die "Switchboard did not start" ;;
    kamailio) start_kamailio || die "Kamailio did not start" ;;
    *) die "unknown server $server (switchboard, kamailio)" ;;
  esac
  if ! start_callees "$server" || ! check_call "$server"; then
    FAILED[$server]="calls do not go through (see above)"
    log "${LABEL[$server]}: skipped: ${FAILED[$server]}"
    stop_callees; stop_server; echo; continue
  fi
  [ "$HOLD_RATE" -gt 0 ] && hold "$server"
  echo
  ramp "$server"
  stop_callees
  stop_server
  echo
done

echo "Calls (INVITE, 407, INVITE with credentials, 180, 200, ACK, ${CALL_MS} ms, BYE, 200), one core:"
for server in $SERVERS; do
  if [ -n "${FAILED[$server]}" ]; then
    printf '  %-18s failed: %s\n' "${LABEL[$server]}" "${FAILED[$server]}"
    continue
  fi
  ratio=""
  if [ "$server" != kamailio ] && [ -n "${BEST[kamailio]:-}" ] && [ -z "${FAILED[kamailio]:-}" ]; then
    ratio=$(awk -v a="${BEST[$server]}" -v b="${BEST[kamailio]}" -v ma="${MEM_KB[$server]}" -v mb="${MEM_KB[kamailio]}" \
      'BEGIN { if (b > 0) printf "rate %.2f x kamailio", a / b; else printf "(kamailio passed no step)";
               if (mb + 0 > 0 && ma != "n/a") printf ", memory %.1f x kamailio", ma / mb }')
  fi
  printf '  %-18s %6d calls/s   %5d us CPU/call there (%s calls/s if CPU-bound)   %6s KB/established call %s  %s\n' \
    "${LABEL[$server]}" "${BEST[$server]}" "${BEST_US[$server]}" \
    "$(awk -v u="${BEST_US[$server]}" 'BEGIN { if (u > 0) printf "~%d", 1000000 / u; else printf "?" }')" \
    "${MEM_KB[$server]}" "${MEM_NOTE[$server]}" "$ratio"
done
# CPU per call compared at the highest rate both servers passed: the
# comparison least disturbed by SIPp being the limit.
if [[ " $SERVERS " == *" switchboard "* && " $SERVERS " == *" kamailio "* ]]; then
  common=""
  for r in $RATES; do
    [ -n "${US_AT[switchboard.$r]:-}" ] && [ -n "${US_AT[kamailio.$r]:-}" ] && common=$r
  done
  if [ -n "$common" ]; then
    echo "  CPU per call at $common calls/s (both passed): switchboard ${US_AT[switchboard.$common]} us," \
      "kamailio ${US_AT[kamailio.$common]} us, $(awk -v a="${US_AT[switchboard.$common]}" -v b="${US_AT[kamailio.$common]}" \
      'BEGIN { if (b > 0) printf "%.2f x kamailio", a / b }')"
  fi
fi
case " $SERVERS " in *" switchboard "*)
  if [ -z "${FAILED[switchboard]}" ]; then
    verdict() { case $1 in 1) echo met ;; n/a) echo "not measured" ;; *) echo "NOT met" ;; esac; }
    echo "  goals: >= $GOAL_RATE calls/s per core through Lua routing: $(verdict "$([ "${BEST[switchboard]}" -ge "$GOAL_RATE" ] && echo 1)");" \
      "<= $GOAL_KB KB per established call: $(verdict "$(awk -v m="${MEM_KB[switchboard]}" -v g="$GOAL_KB" 'BEGIN { if (m == "n/a") print "n/a"; else if (m + 0 <= g) print 1 }')")"
  fi
  ;;
esac
top=""
[ "$QUICK" = 1 ] || for r in $RATES; do top=$r; done
for server in $SERVERS; do
  [ -z "${FAILED[$server]}" ] && [ "${BEST[$server]}" = "$top" ] \
    && echo "  note: ${LABEL[$server]} passed the highest step ($top/s); its limit is above it (or SIPp's)"
done
echo "  (run took $(( $(date +%s) - BENCH_STARTED )) s)"
for server in $SERVERS; do [ -z "${FAILED[$server]}" ] || exit 1; done
exit 0
