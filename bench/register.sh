#!/usr/bin/env bash
# REGISTER benchmark: SIPp drives full digest registrations (REGISTER -> 401
# -> REGISTER with credentials -> 200) at rising rates against Switchboard
# (memory storage, then redb, then PostgreSQL) and Kamailio (registrar +
# usrloc in memory + auth), each server pinned to one core and SIPp to the
# other, all in one run on 127.0.0.1. For the PostgreSQL line the script
# starts a throwaway PostgreSQL (initdb/pg_ctl in a temporary directory, as
# the `postgres` user when run as root), durable as shipped (fsync on),
# not pinned (PG_CPU to pin it); its CPU is not in Switchboard's cpu% and
# us/reg columns. Prints every step, each server's highest rate with under 1%
# failures, and the ratio Switchboard / Kamailio. See bench/README.md.
#
#   bench/register.sh                  full run (about 5 minutes)
#   BENCH_QUICK=1 bench/register.sh    smoke run: two low steps per server
#
# Every run registers all 1,000 extensions 2000..2999 (BENCH_AORS to use
# fewer): SIPp process i takes the extensions 2000+i, 2000+i+BENCH_SIPP, ...
# from its own injection file, one per registration, in turn.
#
# Knobs (environment): BENCH_RATES="1000 2000 ..." (total registrations/s),
# BENCH_STEP_SECONDS=5, BENCH_SERVERS="memory redb postgres kamailio",
# BENCH_SIPP=4 (SIPp processes), BENCH_AORS=1000, BENCH_STOP_AFTER=2
# (consecutive failed steps before a server's ramp stops), BENCH_NO_BUILD=1,
# SB_BIN=path, SERVER_CPU=1, SIPP_CPU=0, PG_CPU= (unset: any), PG_POOL=16,
# BENCH_KEEP=1 (keep the work dir).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"
SCENARIO="$BENCH/scenarios/register-aors.xml"
KAM_CFG="$BENCH/kamailio/register.cfg"
SB_BIN="${SB_BIN:-$ROOT/target/release/switchboard}"

QUICK="${BENCH_QUICK:-0}"
if [ "$QUICK" = 1 ]; then
  RATES="${BENCH_RATES:-500 1000}"
  STEP_SECONDS="${BENCH_STEP_SECONDS:-2}"
else
  RATES="${BENCH_RATES:-1000 2000 4000 6000 8000 10000 12000 14000 16000 20000}"
  STEP_SECONDS="${BENCH_STEP_SECONDS:-5}"
fi
SERVERS="${BENCH_SERVERS:-memory redb postgres kamailio}"
NSIPP="${BENCH_SIPP:-4}"
STOP_AFTER="${BENCH_STOP_AFTER:-2}"
SERVER_CPU="${SERVER_CPU:-1}"
SIPP_CPU="${SIPP_CPU:-0}"
DOMAIN="bench.test"
FIRST_EXT=2000
LAST_EXT=2999
AORS="${BENCH_AORS:-1000}"
RECV_TIMEOUT_MS=2000

WORK="$(mktemp -d -t switchboard-bench.XXXXXX)"   # honours TMPDIR (where bench.redb lives)
SERVER_PID=""       # leader of the server's process group (setsid)
PG_DIR=""           # the throwaway PostgreSQL's directory, while it runs
PG_BIN=""
PG_PORT=""
PG_AS=()            # runuser -u postgres -- when run as root (initdb refuses root)
SIPP_PIDS=()
BENCH_STARTED=$(date +%s)

log() { printf '%s\n' "$*" >&2; }
die() { log "register.sh: $*"; exit 1; }

stop_sipp() {
  local p
  for p in "${SIPP_PIDS[@]:-}"; do
    [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true
  done
  SIPP_PIDS=()
}

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
  stop_server
  stop_postgres
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

# pg_bindir: where initdb and pg_ctl are (pg_config --bindir, else the
# newest /usr/lib/postgresql/*/bin); nothing if PostgreSQL is not installed.
pg_bindir() {
  local d
  d=$(pg_config --bindir 2>/dev/null || true)
  if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
  return 1
}

ensure_tools() {
  local packages=()
  command -v sipp >/dev/null || packages+=(sip-tester)
  command -v kamailio >/dev/null || packages+=(kamailio)
  case " $SERVERS " in *" postgres "*) pg_bindir >/dev/null || packages+=(postgresql) ;; esac
  if [ "${#packages[@]}" -gt 0 ]; then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    log "installing ${packages[*]} (apt-get)"
    $sudo apt-get update
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"
  fi
  command -v taskset >/dev/null || die "taskset (util-linux) is missing"
  command -v setsid >/dev/null || die "setsid (util-linux) is missing"
  KAM_MODULES="${KAM_MODULES:-}"
  if [ -z "$KAM_MODULES" ]; then
    local so
    so=$(ls /usr/lib/*/kamailio/modules/registrar.so /usr/lib/kamailio/modules/registrar.so \
      /usr/lib64/kamailio/modules/registrar.so /usr/local/lib64/kamailio/modules/registrar.so 2>/dev/null | head -n1 || true)
    [ -n "$so" ] || die "kamailio's registrar.so not found (set KAM_MODULES)"
    KAM_MODULES="$(dirname "$so")"
  fi
  local cpus
  cpus=$(nproc)
  [ "$cpus" -gt "$SERVER_CPU" ] && [ "$cpus" -gt "$SIPP_CPU" ] \
    || die "needs CPUs $SIPP_CPU and $SERVER_CPU (this machine has $cpus)"
}

build_switchboard() {
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

# free_tcp_port: a TCP port on 127.0.0.1 nobody listens on.
free_tcp_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(( 20000 + RANDOM % 20000 ))
    if ! ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then echo "$p"; return 0; fi
  done
  die "no free TCP port found"
}

# --- servers ------------------------------------------------------------------

# pg_run PROGRAM ARGS...: a PostgreSQL program, as the cluster's owner.
pg_run() {
  local prog=$1
  shift
  ${PG_AS[@]+"${PG_AS[@]}"} "$PG_BIN/$prog" "$@"
}

# start_postgres: a fresh cluster in its own temporary directory (the work
# directory is private to this user), user switchboard with trust
# authentication, on 127.0.0.1:PG_PORT; durable as shipped.
start_postgres() {
  PG_BIN=$(pg_bindir) || { log "PostgreSQL is not installed (apt-get install postgresql)"; return 1; }
  PG_DIR=$(mktemp -d -t switchboard-bench-pg.XXXXXX)
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres:postgres "$PG_DIR"
    PG_AS=(runuser -u postgres --)
  fi
  pg_run initdb -D "$PG_DIR/data" -U switchboard -A trust -E UTF8 --locale=C >"$WORK/initdb.log" 2>&1 \
    || { tail -n 20 "$WORK/initdb.log" >&2; return 1; }
  PG_PORT=$(free_tcp_port)
  local pin=()
  [ -z "${PG_CPU:-}" ] || pin=(taskset -c "$PG_CPU")
  ${pin[@]+"${pin[@]}"} ${PG_AS[@]+"${PG_AS[@]}"} "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w \
    -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$PG_DIR" start >/dev/null \
    || { tail -n 20 "$PG_DIR/postgres.log" >&2; return 1; }
}

stop_postgres() {
  [ -n "$PG_DIR" ] || return 0
  pg_run pg_ctl -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
  [ "${BENCH_KEEP:-0}" = 1 ] && log "PostgreSQL directory kept: $PG_DIR" || rm -rf "$PG_DIR"
  PG_DIR=""
}

# start_switchboard memory|redb|postgres: config with extensions
# 2000..2999, the SIP port read from the log.
start_switchboard() {
  local backend=$1 storage
  if [ "$backend" = memory ]; then
    storage='backend = "memory"'
  elif [ "$backend" = postgres ]; then
    storage="backend = \"postgres\"
url = \"postgres://switchboard@127.0.0.1:$PG_PORT/postgres\"
pool_size = ${PG_POOL:-16}"
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
# REGISTER never reaches the dialplan, but the server needs one to start.
dir = "$ROOT/dialplans"
plugins = "$ROOT/plugins"

[security]
digest_algorithms = ["MD5"]
# the benchmark's wrong-password probe and any overload failures must not ban 127.0.0.1
ban_after_failures = 0
TOML
    local id
    for id in $(seq "$FIRST_EXT" "$LAST_EXT"); do
      printf '\n[[extension]]\nid = "%s"\npassword = "pw-%s-x"\n' "$id" "$id"
    done
  } > "$WORK/switchboard.toml"
  local logf="$WORK/switchboard-$backend.log"
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
    -l "udp:127.0.0.1:$SERVER_PORT" -m 128 -M 8 -w "$WORK/kamailio-run" -Y "$WORK/kamailio-run" \
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

# --- SIPp -----------------------------------------------------------------------

# The scenario takes the extension and its password from an injection file
# (field0, field1). SIPp 3.6 cannot nest a field in
# [authentication username=[field0]], but -au/-ap accept one.
SIPP_AUTH=(-au '[field0]' -ap '[field1]')

# write_users: $WORK/users-I.csv for each SIPp process I, its share of the
# AORS extensions (2000+I, 2000+I+NSIPP, ...), used in turn (SEQUENTIAL).
write_users() {
  [ "$AORS" -ge "$NSIPP" ] && [ "$AORS" -le $(( LAST_EXT - FIRST_EXT + 1 )) ] \
    || die "BENCH_AORS=$AORS: needs $NSIPP..$(( LAST_EXT - FIRST_EXT + 1 ))"
  local i j
  for i in $(seq 0 $((NSIPP - 1))); do
    {
      echo SEQUENTIAL
      for j in $(seq "$i" "$NSIPP" $((AORS - 1))); do
        echo "$(( FIRST_EXT + j ));pw-$(( FIRST_EXT + j ))-x"
      done
    } > "$WORK/users-$i.csv"
  done
}

# sipp_once EXT PASSWORD TRACE: one registration from the first SIPp
# process's port (extension 2000 is that process's); its exit code;
# messages in TRACE.
sipp_once() {
  printf 'SEQUENTIAL\n%s;%s\n' "$1" "$2" > "$WORK/once.csv"
  taskset -c "$SIPP_CPU" sipp "127.0.0.1:$SERVER_PORT" -sf "$SCENARIO" -t u1 -i 127.0.0.1 \
    -p "${SIPP_PORTS[0]}" -inf "$WORK/once.csv" "${SIPP_AUTH[@]}" -m 1 -timeout 5s -timeout_error \
    -recv_timeout 2000 -nostdin -trace_msg -message_file "$3" >/dev/null 2>&1
}

# check_auth NAME: the right password registers, a wrong one gets 401 and no 200.
check_auth() {
  local name=$1
  sipp_once "$FIRST_EXT" "pw-$FIRST_EXT-x" "$WORK/$name-good.msg" \
    || { log "$name: a registration with the right password failed:"; grep -a '^SIP/2.0' "$WORK/$name-good.msg" >&2 || true; return 1; }
  if sipp_once "$FIRST_EXT" "wrong-password" "$WORK/$name-bad.msg"; then
    log "$name: a wrong password registered"; return 1
  fi
  if grep -aq '^SIP/2.0 200' "$WORK/$name-bad.msg"; then
    log "$name: a wrong password got a 200"; return 1
  fi
  grep -aq '^SIP/2.0 401' "$WORK/$name-bad.msg" || { log "$name: a wrong password got no 401"; return 1; }
  return 0
}

# csv_field FILE NAME: NAME's value in the last row of a SIPp -trace_stat file.
csv_field() {
  awk -F';' -v name="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) col = i; next }
    { last = $col } END { print (col && last != "") ? last : 0 }' "$1"
}

# SPAN_AWK (with -v n= -v a=): a + n / (run time of a -trace_stat file),
# the time taken from the epoch seconds in StartTime and the last CurrentTime.
SPAN_AWK='NR > 1 { split($1, s, "\t"); split($3, c, "\t"); start = s[3]; now = c[3] }
  END { d = now - start; printf "%.0f", (d > 0) ? a + n / d : a }'

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

# run_step SERVER RATE: NSIPP SIPp processes, RATE/NSIPP registrations/s each,
# for STEP_SECONDS; sets STEP_* results. Process i sends from SIPP_PORTS[i],
# so each extension keeps one Contact (one binding) through the whole run.
SIPP_PORTS=()
run_step() {
  local name=$1 rate=$2 i per calls dir
  per=$(( (rate + NSIPP - 1) / NSIPP ))
  calls=$(( per * STEP_SECONDS ))
  dir="$WORK/$name-$rate"
  mkdir -p "$dir"
  # The same local port per process all run long (a phone keeps its
  # Contact), unless something else took it meanwhile.
  for i in $(seq 0 $((NSIPP - 1))); do
    if [ -z "${SIPP_PORTS[$i]:-}" ] || ss -Hlun "sport = :${SIPP_PORTS[$i]}" 2>/dev/null | grep -q .; then
      SIPP_PORTS[$i]=$(free_udp_port)
    fi
  done
  local t0 t1 cpu0 cpu1
  cpu0=$(server_cpu_ticks)
  t0=$(date +%s%N)
  SIPP_PIDS=()
  for i in $(seq 0 $((NSIPP - 1))); do
    taskset -c "$SIPP_CPU" sipp "127.0.0.1:$SERVER_PORT" -sf "$SCENARIO" -t u1 -i 127.0.0.1 \
      -p "${SIPP_PORTS[$i]}" -inf "$WORK/users-$i.csv" "${SIPP_AUTH[@]}" \
      -r "$per" -rp 1000 -m "$calls" -recv_timeout "$RECV_TIMEOUT_MS" \
      -timeout "$(( STEP_SECONDS * 2 + 10 ))s" -nostdin -default_behaviors all,-bye \
      -trace_stat -stf "$dir/stat-$i.csv" -fd 1 -trace_err -error_file "$dir/errors-$i.log" \
      >"$dir/sipp-$i.out" 2>&1 &
    SIPP_PIDS+=("$!")
  done
  local p
  for p in "${SIPP_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  SIPP_PIDS=()
  t1=$(date +%s%N)
  cpu1=$(server_cpu_ticks)
  local ok=0 failed=0 retrans=0 ooc=0 f n achieved=0
  for i in $(seq 0 $((NSIPP - 1))); do
    f="$dir/stat-$i.csv"
    [ -s "$f" ] || continue
    n=$(csv_field "$f" 'SuccessfulCall(C)')
    ok=$(( ok + n ))
    retrans=$(( retrans + $(csv_field "$f" 'Retransmissions(C)') ))
    ooc=$(( ooc + $(csv_field "$f" 'OutOfCallMsgs(C)') ))
    # This process's rate: its successes over its own run time (from its
    # start to its last statistics row, i.e. the end of its last call).
    achieved=$(awk -F";" -v n="$n" -v a="$achieved" "$SPAN_AWK" "$f")
  done
  # Responses that failed a call, by status code ("503x120 500x3"); the
  # error logs themselves are large at overload and only kept with BENCH_KEEP=1.
  STEP_UNEXPECTED=$(cat "$dir"/errors-*.log 2>/dev/null | grep -a "Aborting call on unexpected message" \
    | grep -ao "received 'SIP/2.0 [0-9]*" \
    | awk '{ n[$3]++ } END { for (c in n) { printf "%s%sx%d", sep, c, n[c]; sep = " " } }' || true)
  [ "${BENCH_KEEP:-0}" = 1 ] || rm -f "$dir"/errors-*.log
  local total=$(( calls * NSIPP ))
  # Everything that did not end in a 200: failed calls (unexpected messages,
  # receive timeouts, retransmissions exhausted) and calls left unfinished.
  failed=$(( total - ok ))
  local ms=$(( (t1 - t0) / 1000000 ))
  STEP_OK=$ok
  STEP_FAILED=$failed
  STEP_RETRANS=$retrans
  STEP_OOC=$ooc
  STEP_MS=$ms
  # CPU the server used during the step: busy share of its core, and CPU
  # microseconds per successful registration (independent of other load).
  local cpu_ms=$(( (cpu1 - cpu0) * 1000 / CLK_TCK ))
  STEP_CPU_PCT=$(( cpu_ms * 100 / (ms > 0 ? ms : 1) ))
  STEP_US_PER_REG=$(( ok > 0 ? cpu_ms * 1000 / ok : 0 ))
  STEP_ACHIEVED=${achieved%.*}
  STEP_FAIL_PCT=$(awk -v f="$failed" -v t="$total" 'BEGIN { printf "%.2f", t ? 100 * f / t : 100 }')
  if [ $(( failed * 100 )) -lt "$total" ] && [ $(( STEP_ACHIEVED * 100 )) -ge $(( rate * 95 )) ]; then
    STEP_PASS=1
  else
    STEP_PASS=0
  fi
}

# ramp SERVER: rising rates until STOP_AFTER consecutive failed steps; BEST[SERVER].
declare -A BEST BEST_US
declare -A LABEL=([memory]="switchboard (memory)" [redb]="switchboard (redb)" [postgres]="switchboard (postgres)" [kamailio]="kamailio")
ramp() {
  local name=$1 rate fails=0 best=0 best_us=0
  printf '%-22s %8s %9s %9s %8s %7s %8s %5s %7s %-6s %s\n' "${LABEL[$name]}" "target/s" "achieved" "ok" "failed" "fail%" \
    "retrans" "cpu%" "us/reg" "result" "unexpected"
  for rate in $RATES; do
    run_step "$name" "$rate"
    printf '%-22s %8d %9d %9d %8d %7s %8d %5d %7d %-6s %s\n' "" "$rate" "$STEP_ACHIEVED" "$STEP_OK" "$STEP_FAILED" \
      "$STEP_FAIL_PCT" "$STEP_RETRANS" "$STEP_CPU_PCT" "$STEP_US_PER_REG" \
      "$([ "$STEP_PASS" = 1 ] && echo pass || echo FAIL)" "$STEP_UNEXPECTED"
    if [ "$STEP_PASS" = 1 ]; then
      best=$rate; best_us=$STEP_US_PER_REG; fails=0
    else
      fails=$(( fails + 1 ))
      [ "$fails" -ge "$STOP_AFTER" ] && break
    fi
    sleep 1   # let queues drain between steps
  done
  BEST[$name]=$best
  BEST_US[$name]=$best_us
}

# --- the run ----------------------------------------------------------------------

ensure_tools
write_users
for i in $(seq 0 $((NSIPP - 1))); do SIPP_PORTS[$i]=$(free_udp_port); done
case " $SERVERS " in *" memory "*|*" redb "*|*" postgres "*) build_switchboard ;; esac

load=$(cut -d' ' -f1 /proc/loadavg)
echo "register.sh: rates [$RATES]/s, ${STEP_SECONDS}s steps, $AORS AORs, $NSIPP SIPp processes on CPU $SIPP_CPU, server on CPU $SERVER_CPU; load average $load"
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
  echo "warning: the machine is not idle (load $load); figures will be low and noisy"
fi
echo "(a step passes with < 1% failures and >= 95% of the target rate)"
echo

for server in $SERVERS; do
  case $server in
    memory|redb) start_switchboard "$server" || die "Switchboard ($server) did not start" ;;
    postgres)
      start_postgres || die "PostgreSQL did not start"
      start_switchboard postgres || die "Switchboard (postgres) did not start"
      ;;
    kamailio) start_kamailio || die "Kamailio did not start" ;;
    *) die "unknown server $server (memory, redb, postgres, kamailio)" ;;
  esac
  check_auth "$server" || die "${LABEL[$server]}: authentication check failed"
  ramp "$server"
  stop_server
  stop_postgres
  echo
done

echo "REGISTER with digest challenge/response, highest rate with < 1% failures and >= 95% of target:"
for server in $SERVERS; do
  ratio=""
  if [ "$server" != kamailio ] && [ -n "${BEST[kamailio]:-}" ]; then
    ratio=$(awk -v a="${BEST[$server]}" -v b="${BEST[kamailio]}" \
      'BEGIN { if (b > 0) printf "%.2f x kamailio", a / b; else print "(kamailio passed no step)" }')
  fi
  printf '  %-22s %6d /s   %4d us CPU/registration there   %s\n' "${LABEL[$server]}" "${BEST[$server]}" \
    "${BEST_US[$server]}" "$ratio"
done
top=""
[ "$QUICK" = 1 ] || for r in $RATES; do top=$r; done
for server in $SERVERS; do
  [ "${BEST[$server]}" = "$top" ] && echo "  note: ${LABEL[$server]} passed the highest step ($top/s); its limit is above it (or SIPp's)"
done
echo "  (run took $(( $(date +%s) - BENCH_STARTED )) s)"
