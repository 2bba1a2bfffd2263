#!/usr/bin/env bash
# Two Switchboard nodes on one PostgreSQL database behind Kamailio, on
# loopback, with the shipped deploy/kamailio/kamailio.cfg:
#   - PostgreSQL is started in a temporary directory (initdb/pg_ctl; as the
#     postgres user, or nobody, when this runs as root); node A listens on
#     127.0.0.2, node B on 127.0.0.3 (backend = "postgres"), Kamailio on
#     127.0.0.1 with the nodes in its dispatcher list, probed with OPTIONS
#     every PROBE_INTERVAL seconds. Phones only talk to Kamailio, which adds
#     Path to every REGISTER and picks a node by a hash of the From user.
#   - Which node serves which extension is read from the nodes' logs after
#     one REGISTER each (SIPp), so the script picks its pairs from them.
#   - Two baresip phones registered through different nodes call each other
#     (the call runs on the caller's node, which reaches the callee through
#     its Path, i.e. through Kamailio): both see it established and each
#     hears the other's tone (a Goertzel analysis of what its decoder
#     played, python3 standard library).
#   - Under a steady SIPp call load on both nodes (callers hashed to each,
#     answered by SIPp callees registered through Kamailio), node A is
#     killed with SIGKILL: every call of the load on node B completes (its
#     caller and callee count all of them), and at once, with no wait, a new
#     REGISTER of an extension that node A served and new calls from a
#     caller that node A served succeed through node B, within the
#     dispatcher's probe interval plus the failover timeout (bounded by
#     SIPp's -timeout). Every registration acknowledged with a 200 before
#     and after the kill is listed by GET /api/v1/registrations on node B.
# Every wait bounded; every process started here killed on exit.
source "$(dirname "$0")/common.bash"
SCEN="$ROOT/tests/interop/scenarios"
command -v kamailio >/dev/null || fail "kamailio not installed (Debian package kamailio)"
command -v baresip >/dev/null || fail "baresip not installed (Debian package baresip)"
command -v python3 >/dev/null || fail "python3 not found (the audio analysis needs it)"
PG_INITDB=$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n1 || true)
[ -n "$PG_INITDB" ] || fail "PostgreSQL not installed (Debian package postgresql: initdb, pg_ctl)"
PG_BIN=$(dirname "$PG_INITDB")
KAM_MODULES=$(dirname "$(ls /usr/lib/*/kamailio/modules/dispatcher.so /usr/lib/kamailio/modules/dispatcher.so \
  /usr/lib64/kamailio/modules/dispatcher.so 2>/dev/null | head -n1)")
[ -f "$KAM_MODULES/dispatcher.so" ] || fail "kamailio's dispatcher.so not found"

# The dispatcher's probe interval (s) and the time a node has to answer
# before a request fails over (ms), passed to the shipped cfg with -A.
PROBE_INTERVAL=2
FR_TIMER=1000
DOMAIN=interop.test

PIDS=()
declare -A NODE_PID=()
PG_DIR=""
PG_AS=()
stop_all() {
  local p
  # KEEP_WORK=DIR keeps a copy of the logs and recordings, for debugging.
  [ -n "${KEEP_WORK:-}" ] && cp -r "$WORK" "$KEEP_WORK" 2>/dev/null
  # Kamailio's workers first: SIGKILL on the main process alone leaves
  # them running (and holding its port) after this script.
  [ -n "${KAM_PID:-}" ] && pkill -9 -P "$KAM_PID" 2>/dev/null || true
  for p in "${PIDS[@]:-}" "${NODE_PID[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
  if [ -n "$PG_DIR" ]; then
    "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
  fi
  baresip_cleanup
}
trap stop_all EXIT

show_logs() {
  local f
  for f in "$WORK"/node-*.log "$WORK/kamailio.log"; do
    [ -f "$f" ] || continue
    echo "--- $(basename "$f") (end)" >&2
    grep -v ' DEBUG ' "$f" | tail -n 25 >&2
  done
}
die() { show_logs; baresip_fail "$*"; }

# --- PostgreSQL ------------------------------------------------------------
# initdb refuses to run as root: then the cluster belongs to postgres (or
# nobody) and its programs run through runuser, in a directory of its own.
PG_DIR=$(mktemp -d)
if [ "$(id -u)" -eq 0 ]; then
  pg_user=postgres
  id -u "$pg_user" >/dev/null 2>&1 || pg_user=nobody
  chown "$pg_user" "$PG_DIR"
  PG_AS=(runuser -u "$pg_user" --)
fi
"${PG_AS[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U switchboard -A trust -E UTF8 --locale=C --no-sync \
  >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log" >&2; fail "initdb"; }

# free_port: a port nobody listens on (UDP or TCP, any address).
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(( 20000 + RANDOM % 20000 ))
    port_free "$p" && { echo "$p"; return 0; }
  done
  fail "no free port found"
}

PG_PORT=$(free_port)
"${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$PG_DIR -c fsync=off -c max_connections=40" \
  start >"$WORK/pg_ctl.log" 2>&1 || { cat "$WORK/pg_ctl.log" "$PG_DIR/postgres.log" >&2; fail "pg_ctl start"; }
echo "PostgreSQL on 127.0.0.1:$PG_PORT"

# --- Two nodes ---------------------------------------------------------------
EXTS=(1001 1002 1003 1004 1011 1012 1013 1014 1015 1016 1017 1018 1021 1022 1023 1024)
NODE_PORT=$(free_port)
declare -A NODE_IP=([A]=127.0.0.2 [B]=127.0.0.3) NODE_ADMIN=()

# start_node N: node N on NODE_IP[N]:NODE_PORT (UDP), admin on port 0.
# Kamailio (127.0.0.1) is trusted: every phone's failures come from it.
# The registrar logs each REGISTER it accepts (debug), which tells which
# node Kamailio sent an extension to. No OPTIONS pings: the SIPp callees
# answer calls only.
start_node() {
  local n=$1 ip=${NODE_IP[$1]} conf="$WORK/node-$1.toml" log="$WORK/node-$1.log" ext admin
  mkdir -p "$WORK/node-$n"
  cat > "$conf" <<TOML
[sip]
listen = ["udp:$ip:$NODE_PORT"]
domain = "$DOMAIN"

[admin]
listen = "$ip:0"
token = "$SB_ADMIN_TOKEN"

[log]
level = "info,registrar=debug"

[storage]
backend = "postgres"
url = "postgres://switchboard@127.0.0.1:$PG_PORT/postgres"
pool_size = 4
connect_timeout = "5s"

[security]
trusted_networks = ["127.0.0.1"]

[registrar]
qualify_interval = "0s"

[dialplan]
dir = "$ROOT/dialplans"
plugins = "$ROOT/plugins"
sounds = "$ROOT/sounds"
voicemail = "$WORK/node-$n/voicemail"
TOML
  for ext in "${EXTS[@]}"; do
    printf '\n[[extension]]\nid = "%s"\npassword = "pw-%s-x"\n' "$ext" "$ext" >> "$conf"
  done
  (cd "$WORK/node-$n" && exec "$SB_BIN" run --config "$conf") >/dev/null 2>"$log" &
  NODE_PID[$n]=$!
  for _ in $(seq 1 400); do
    admin=$(sed -n 's/.*admin listening on http:\/\/\([0-9.:]*\).*/\1/p' "$log" | head -n1)
    if [ -n "$admin" ] && grep -q "SIP listening on udp:$ip:$NODE_PORT" "$log"; then
      NODE_ADMIN[$n]=$admin
      return 0
    fi
    kill -0 "${NODE_PID[$n]}" 2>/dev/null || { tail -n 20 "$log" >&2; fail "node $n exited during start-up"; }
    sleep 0.05
  done
  tail -n 20 "$log" >&2
  fail "node $n did not log its listeners within 20 s"
}
start_node A
start_node B
echo "nodes A on ${NODE_IP[A]}:$NODE_PORT, B on ${NODE_IP[B]}:$NODE_PORT (admin ${NODE_ADMIN[A]}, ${NODE_ADMIN[B]})"

# node_get N PATH: the admin API of node N.
node_get() { SB_ADMIN=${NODE_ADMIN[$1]} admin_get "$2"; }

# --- Kamailio with the shipped cfg -------------------------------------------
KAM_PORT=$(free_port)
printf '1 sip:%s:%s 8\n1 sip:%s:%s 8\n' "${NODE_IP[A]}" "$NODE_PORT" "${NODE_IP[B]}" "$NODE_PORT" \
  > "$WORK/dispatcher.list"
mkdir -p "$WORK/kamailio-run"
kamailio -DD -E -f "$ROOT/deploy/kamailio/kamailio.cfg" -L "$KAM_MODULES" \
  -A NO_TCP -A "SIP_LISTEN=udp:127.0.0.1:$KAM_PORT" -A "DS_LIST=\"$WORK/dispatcher.list\"" \
  -A "PROBE_INTERVAL=$PROBE_INTERVAL" -A "FR_TIMER=$FR_TIMER" -A CHILDREN=2 \
  -m 64 -M 8 -w "$WORK/kamailio-run" -Y "$WORK/kamailio-run" >"$WORK/kamailio.log" 2>&1 &
PIDS+=("$!")
KAM_PID=$!
for _ in $(seq 1 200); do
  ss -Hlun "sport = :$KAM_PORT" 2>/dev/null | grep -q . && break
  kill -0 "$KAM_PID" 2>/dev/null || { tail -n 30 "$WORK/kamailio.log" >&2; fail "kamailio exited during start-up"; }
  sleep 0.05
done
ss -Hlun "sport = :$KAM_PORT" 2>/dev/null | grep -q . || fail "kamailio did not listen within 10 s"
# The phones reach Switchboard through Kamailio only (common.bash's
# baresip_start registers at 127.0.0.1:$SB_UDP_PORT).
SB_UDP_PORT=$KAM_PORT
SB_ADMIN=${NODE_ADMIN[B]}
echo "Kamailio on 127.0.0.1:$KAM_PORT (probe interval ${PROBE_INTERVAL}s, failover after ${FR_TIMER} ms)"

# --- SIPp helpers --------------------------------------------------------------
show_msgs() {
  [ -f "$1" ] || return 0
  awk '/message sent/ { dir = "  -> " } /message received/ { dir = "  <- " }
    /^(SIP\/2\.0 |[A-Z]+ [^ ]+ SIP\/2\.0)/ { print dir $0 }' "$1" | head -n 30 >&2
}
sipp_fail() {
  echo "--- $1: messages (-> sent, <- received)" >&2
  show_msgs "$WORK/$1.msg"
  [ -s "$WORK/$1.err" ] && { echo "--- $1: SIPp errors (the first)" >&2; head -n 15 "$WORK/$1.err" >&2; }
  [ -s "$WORK/$1.out" ] && { echo "--- $1: SIPp output (the end)" >&2; tail -n 15 "$WORK/$1.out" >&2; }
  die "$1"
}

ACKED=()
# register EXT PORT [TIMEOUT]: digest REGISTER through Kamailio from
# 127.0.0.1:PORT; must get its 200 within TIMEOUT (default 10 s).
register() {
  sipp "127.0.0.1:$KAM_PORT" -sf "$SCEN/register.xml" -t u1 -i 127.0.0.1 -p "$2" \
    -s "$1" -au "$1" -ap "pw-$1-x" -m 1 -timeout "${3:-10}s" -timeout_error -nostdin \
    -trace_msg -message_file "$WORK/register-$1.msg" -trace_err -error_file "$WORK/register-$1.err" \
    >"$WORK/register-$1.out" 2>&1 || sipp_fail "register-$1"
  ACKED+=("$1")
}

# callee EXT PORT CALLS: a SIPp UAS on PORT (pid in LAST_PID) answering
# CALLS calls; it exits 0 once all of them ended with a BYE.
callee() {
  sipp -sf "$SCEN/call-uas.xml" -t u1 -i 127.0.0.1 -p "$2" -s "$1" -m "$3" -timeout 90s -timeout_error \
    -nostdin -trace_msg -message_file "$WORK/callee-$1.msg" -trace_err -error_file "$WORK/callee-$1.err" \
    >"$WORK/callee-$1.out" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
  for _ in $(seq 1 100); do
    ss -Hlun "sport = :$2" 2>/dev/null | grep -q . && return 0
    sleep 0.05
  done
  fail "the SIPp callee $1 did not bind 127.0.0.1:$2"
}

# caller NAME FROM TO TIMEOUT [sipp options...]: calls from FROM to TO
# through Kamailio in the background (pid in LAST_PID).
caller() {
  local name=$1 from=$2 to=$3 timeout=$4
  shift 4
  sipp "127.0.0.1:$KAM_PORT" -sf "$SCEN/call-uac.xml" -t u1 -i 127.0.0.1 -p "$(free_port)" \
    -s "$to" -key caller "$from" -au "$from" -ap "pw-$from-x" -timeout "$timeout" -timeout_error -nostdin \
    -trace_msg -message_file "$WORK/$name.msg" -trace_err -error_file "$WORK/$name.err" "$@" \
    >"$WORK/$name.out" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

# wait_ok PID NAME SECONDS: the SIPp run must exit 0 within SECONDS.
wait_ok() {
  local pid=$1 name=$2 rc=0
  for _ in $(seq 1 $(( $3 * 20 ))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -0 "$pid" 2>/dev/null && { kill -9 "$pid"; sipp_fail "$name (still running after $3 s)"; }
  wait "$pid" || rc=$?
  [ "$rc" -eq 0 ] || sipp_fail "$name"
}

# node_of EXT: the node whose registrar accepted EXT's REGISTER.
node_of() {
  local n
  for n in A B; do
    grep -q "REGISTER ok.*aor=sip:$1@$DOMAIN" "$WORK/node-$n.log" && { echo "$n"; return 0; }
  done
  echo "?"
}

# --- Which node serves which extension ------------------------------------------
# Kamailio hashes the From user: one REGISTER each shows where it goes. The
# SIPp callers (1011..1018) register too, so the script knows their node.
declare -A ON=([A]="" [B]="")
for ext in 1001 1002 1003 1004 1011 1012 1013 1014 1015 1016 1017 1018; do
  register "$ext" "$(free_port)"
  n=$(node_of "$ext")
  [ "$n" = "?" ] && die "no node logged $ext's REGISTER"
  ON[$n]+="$ext "
done
echo "through Kamailio, node A serves: ${ON[A]}; node B: ${ON[B]}"
pick() { # pick NODE RANGE-REGEX: the first extension of NODE matching it
  local e
  for e in ${ON[$1]}; do [[ $e =~ $2 ]] && { echo "$e"; return 0; }; done
  die "Kamailio sent no extension matching $2 to node $1 (node A: ${ON[A]}; node B: ${ON[B]})"
}
PHONE_A=$(pick A '^100[1-4]$')
PHONE_B=$(pick B '^100[1-4]$')
read -r CALLER_A CALLER_A2 _ <<<"$(for e in ${ON[A]}; do [[ $e =~ ^101 ]] && echo -n "$e "; done)"
CALLER_B=$(pick B '^101')
[ -n "$CALLER_A" ] && [ -n "${CALLER_A2:-}" ] || die "fewer than two SIPp callers on node A (${ON[A]})"

# Every node lists every node's bindings (one database).
for n in A B; do
  regs=$(node_get "$n" /api/v1/registrations)
  for ext in "${ACKED[@]}"; do
    grep -q "\"aor\":\"sip:$ext@$DOMAIN\"" <<<"$regs" || die "node $n does not list $ext: $regs"
  done
done
echo "both nodes list all ${#ACKED[@]} registrations"

# --- A call between phones registered through different nodes, with audio -------
baresip_start "$PHONE_A" "ausine,700"
baresip_start "$PHONE_B" "ausine,1700"
baresip_wait_registered "$PHONE_A" "$PHONE_B"
ACKED+=("$PHONE_A" "$PHONE_B")
echo "baresip $PHONE_A (700 Hz) registered through node A, $PHONE_B (1700 Hz) through node B"

# tones FILE: one letter per 100 ms of a recording: a (700 Hz) or c (1700
# Hz) when that tone holds most of the block's energy, "." quiet, "?" else.
tones() {
  python3 - "$1" <<'PY'
import math, struct, sys

data = open(sys.argv[1], "rb").read()
if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
    sys.exit("%s: not a WAV file" % sys.argv[1])
pos, rate, pcm = 12, None, None
while pos + 8 <= len(data):
    cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
    body = data[pos + 8:pos + 8 + size] if size else data[pos + 8:]
    if cid == b"fmt ":
        fmt, ch, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
        if fmt != 1 or bits != 16:
            sys.exit("%s: not 16-bit PCM" % sys.argv[1])
    elif cid == b"data":
        pcm = body[:len(body) // 2 * 2]
        break
    pos += 8 + size + (size & 1)
if rate is None or pcm is None:
    sys.exit("%s: no fmt or data chunk" % sys.argv[1])
s = struct.unpack("<%dh" % (len(pcm) // 2), pcm)[::ch]

def share(block, freq):
    n = len(block)
    coeff = 2 * math.cos(2 * math.pi * round(freq * n / rate) / n)
    s1 = s2 = 0.0
    for x in block:
        s1, s2 = x + coeff * s1 - s2, s1
    energy = sum(x * x for x in block)
    return (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (n / 2 * energy) if energy else 0.0

n, out = rate // 10, []
for i in range(len(s) // n):
    b = s[i * n:(i + 1) * n]
    if math.sqrt(sum(x * x for x in b) / n) < 300:
        out.append(".")
        continue
    out.append(next((l for l, f in (("a", 700), ("c", 1700)) if share(b, f) >= 0.8), "?"))
print("".join(out))
PY
}

# heard EXT LETTER: the phone's recording of what it heard holds at least
# a second of the other's tone.
heard() {
  local dumps l
  dumps=("$WORK/baresip-$1/dumps"/dump-*-dec.wav)
  [ "${#dumps[@]}" -eq 1 ] && [ -f "${dumps[0]}" ] \
    || die "baresip $1: expected one recording of what it heard, found: $(ls "$WORK/baresip-$1/dumps")"
  l=$(tones "${dumps[0]}") || die "baresip $1: cannot read ${dumps[0]}"
  echo "  $1 heard: $l"
  grep -Eq "$2{10}" <<<"$l" || die "baresip $1 did not hear the other phone's tone ($2)"
}

baresip_ctrl "$PHONE_A" dial "$PHONE_B"
baresip_wait_event "$PHONE_A" CALL_ESTABLISHED 1 15
baresip_wait_event "$PHONE_B" CALL_ESTABLISHED 1 5
calls_a=$(node_get A /api/v1/calls)
grep -q "\"callee\":\"$PHONE_B\"" <<<"$calls_a" || die "the call is not on node A (the caller's): $calls_a"
sleep 3
baresip_ctrl "$PHONE_A" hangup
baresip_wait_event "$PHONE_A" CALL_CLOSED 1 10
baresip_wait_event "$PHONE_B" CALL_CLOSED 1 10
baresip_quit "$PHONE_A"
baresip_quit "$PHONE_B"
sleep 1
heard "$PHONE_A" c
heard "$PHONE_B" a
echo "call $PHONE_A -> $PHONE_B ran on node A, reached $PHONE_B (registered through node B) via its Path; audio both ways"

# --- SIGKILL of node A under a steady call load ------------------------------------
# Callees for each node's load (where they registered does not matter: the
# calls reach them through their Path from either node), then 3 s calls at
# 4 a second from a caller on each node.
LOAD_CALLS=40
p_ua=$(free_port); register 1021 "$p_ua"; callee 1021 "$p_ua" "$LOAD_CALLS"; uas_a=$LAST_PID
p_ub=$(free_port); register 1022 "$p_ub"; callee 1022 "$p_ub" "$LOAD_CALLS"; uas_b=$LAST_PID
caller load-A "$CALLER_A" 1021 60s -m "$LOAD_CALLS" -r 4 -d 3000; load_a=$LAST_PID
caller load-B "$CALLER_B" 1022 60s -m "$LOAD_CALLS" -r 4 -d 3000; load_b=$LAST_PID
sleep 4
up_a=$(node_get A /api/v1/calls | grep -o '"callee":"1021"' | wc -l)
up_b=$(node_get B /api/v1/calls | grep -o '"callee":"1022"' | wc -l)
[ "$up_a" -gt 0 ] && [ "$up_b" -gt 0 ] || die "no steady load: $up_a calls up on node A, $up_b on node B"
echo "load: $up_a calls up on node A ($CALLER_A -> 1021), $up_b on node B ($CALLER_B -> 1022)"

kill -9 "${NODE_PID[A]}"
wait "${NODE_PID[A]}" 2>/dev/null || true
NODE_PID[A]=""
killed=$(date +%s%N)
echo "node A killed (SIGKILL)"

# At once: a REGISTER of an extension node A served, and new calls from a
# caller node A served, both through node B. Bound: the probe interval
# plus the failover timeout plus SIPp's first retransmissions.
bound=$(( PROBE_INTERVAL + FR_TIMER / 1000 + 3 ))
p_new=$(free_port)
register "$CALLER_A2" "$p_new" "$bound"
took=$(( ($(date +%s%N) - killed) / 1000000 ))
echo "REGISTER $CALLER_A2 (node A's) answered 200 through node B ${took} ms after the kill (bound ${bound} s)"
p_nc=$(free_port); register 1023 "$p_nc"; callee 1023 "$p_nc" 3; uas_new=$LAST_PID
caller after-kill "$CALLER_A" 1023 "${bound}s" -m 3 -r 10 -d 500; new_calls=$LAST_PID
wait_ok "$new_calls" after-kill $(( bound + 5 ))
wait_ok "$uas_new" callee-1023 10
took=$(( ($(date +%s%N) - killed) / 1000000 ))
echo "3 new calls from $CALLER_A (node A's) answered and hung up through node B, done ${took} ms after the kill"
grep -Eq "(Switchboard node down: .*sip:${NODE_IP[A]}:$NODE_PORT|node sip:${NODE_IP[A]}:$NODE_PORT did not answer)" \
  "$WORK/kamailio.log" || die "Kamailio did not take node A out"

# Node B's load is untouched: every one of its calls completed.
wait_ok "$load_b" load-B 60
wait_ok "$uas_b" callee-1022 10
echo "all $LOAD_CALLS calls of node B's load completed, across the kill"
kill -9 "$load_a" "$uas_a" 2>/dev/null || true

# No acknowledged registration is lost: node B lists every one.
regs=$(node_get B /api/v1/registrations)
for ext in "${ACKED[@]}"; do
  grep -q "\"aor\":\"sip:$ext@$DOMAIN\"" <<<"$regs" || die "node B lost the acknowledged registration of $ext: $regs"
done
echo "node B lists all ${#ACKED[@]} acknowledged registrations (node A served: ${ON[A]})"

grep -q "panicked" "$WORK/node-A.log" "$WORK/node-B.log" && die "a panic was logged"
kill -TERM "${NODE_PID[B]}"
for _ in $(seq 1 200); do kill -0 "${NODE_PID[B]}" 2>/dev/null || break; sleep 0.05; done
kill -0 "${NODE_PID[B]}" 2>/dev/null && die "node B did not stop within 10 s of SIGTERM"
rc=0; wait "${NODE_PID[B]}" || rc=$?
NODE_PID[B]=""
[ "$rc" -eq 0 ] || die "node B exited with $rc after SIGTERM"
echo "ok: two nodes on PostgreSQL behind Kamailio: cross-node call with audio, node A killed under load, node B carried on"
