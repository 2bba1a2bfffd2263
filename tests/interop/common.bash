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

# --- baresip softphones driven over ctrl_tcp (the baresip_* family) --------
# baresip_start EXT SOURCE: a headless baresip (1.0) registered as EXT
# (password pw-EXT-x) on 127.0.0.1, auto-answering, PCMU, 8 kHz mono
# microphone SOURCE at 48 kHz stereo ("ausine,HZ": ausine supports nothing else), ALSA's null device as
# speaker, the sndfile module dumping what it sends and what it hears to
# $WORK/baresip-EXT/dumps, SIP trace (-s) in $WORK/baresip-EXT.log. One
# connection to its ctrl_tcp is kept open (BARESIP_FD[EXT]): commands are
# written to it and a reader keeps everything that comes back (responses
# and events, JSON netstrings) in $WORK/events-EXT.ns. baresip quits by
# itself after 5 minutes; baresip_cleanup kills what was started here.
BARESIP_PIDS=()
declare -A BARESIP_FD=()
baresip_cleanup() {
  local p
  for p in "${BARESIP_PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
  cleanup
}

baresip_modules() {
  local d
  for d in /usr/lib/*/baresip/modules /usr/lib/baresip/modules /usr/local/lib/baresip/modules; do
    [ -f "$d/ctrl_tcp.so" ] && { echo "$d"; return 0; }
  done
  fail "baresip's modules (ctrl_tcp.so) not found"
}

port_free() { ! ss -Hlntu "sport = :$1" 2>/dev/null | grep -q .; }

# free_port_pair: a port P with P and P+1 free on UDP and TCP (baresip
# listens for SIP on UDP and TCP at P and for TLS at P+1).
free_port_pair() {
  local p
  for _ in $(seq 1 200); do
    p=$(( 20000 + RANDOM % 10000 ))
    port_free "$p" && port_free $((p + 1)) && { echo "$p"; return 0; }
  done
  fail "no free port found"
}

baresip_start() {
  local ext=$1 source=$2 dir="$WORK/baresip-$1" modules sip ctrl rtp fd pid
  modules=$(baresip_modules)
  mkdir -p "$dir/dumps"
  sip=$(free_port_pair)
  ctrl=$(free_port_pair)
  rtp=$(( 40000 + (RANDOM % 1000) * 20 ))
  cat > "$dir/config" <<CONF
poll_method		epoll
net_interface		127.0.0.1
sip_listen		127.0.0.1:$sip
call_local_timeout	30
call_max_calls		4
audio_player		alsa,null
audio_alert		alsa,null
audio_source		$source
ausrc_srate		48000
ausrc_channels		2
rtp_ports		$rtp-$((rtp + 19))
module_path		$modules
module			g711.so
module			ausine.so
module			aufile.so
module			alsa.so
module			sndfile.so
snd_path		$dir/dumps
module_tmp		account.so
module_app		menu.so
module_app		ctrl_tcp.so
ctrl_tcp_listen		127.0.0.1:$ctrl
CONF
  echo "<sip:$ext@127.0.0.1:$SB_UDP_PORT;transport=udp>;auth_pass=pw-$ext-x;answermode=auto;regint=600;audio_codecs=pcmu" \
    > "$dir/accounts"
  baresip -t 300 -s -f "$dir" </dev/null >"$WORK/baresip-$ext.log" 2>&1 &
  pid=$!
  BARESIP_PIDS+=("$pid")
  for _ in $(seq 1 200); do
    port_free "$ctrl" || break
    kill -0 "$pid" 2>/dev/null || baresip_fail "baresip $ext exited during start-up"
    sleep 0.05
  done
  port_free "$ctrl" && baresip_fail "baresip $ext did not open ctrl_tcp within 10 s"
  exec {fd}<>"/dev/tcp/127.0.0.1/$ctrl" || baresip_fail "cannot connect to baresip $ext's ctrl_tcp"
  BARESIP_FD[$ext]=$fd
  cat <&"$fd" >"$WORK/events-$ext.ns" &
  BARESIP_PIDS+=("$!")
}

# baresip_wait_registered EXT...: Switchboard lists a binding for each.
baresip_wait_registered() {
  local regs ext all
  for _ in $(seq 1 200); do
    regs=$(admin_get /api/v1/registrations)
    all=true
    for ext in "$@"; do grep -q '"aor":"sip:'"$ext"'@' <<<"$regs" || all=false; done
    $all && return 0
    sleep 0.05
  done
  echo "$regs" >&2
  baresip_fail "baresip $* did not all register within 10 s"
}

# baresip_log EXT: the phone's log (SIP trace included), CRs and colours gone.
baresip_log() { tr '\r' '\n' < "$WORK/baresip-$1.log" | grep -av -e 'audio=' -e '^$' | sed 's/\x1b\[[0-9;]*m//g'; }

# baresip_fail MESSAGE: the end of every phone's log and events, then fail.
baresip_fail() {
  local ext
  for ext in "${!BARESIP_FD[@]}"; do
    echo "--- baresip $ext: log (end)" >&2
    baresip_log "$ext" | tail -n 80 >&2 || true
    echo "--- baresip $ext: events" >&2
    baresip_events "$ext" | tail -n 20 >&2 || true
  done
  fail "$*"
}

# baresip_events EXT: the phone's ctrl_tcp events, one "TYPE param" line each.
baresip_events() {
  grep -ao '{"event":true[^}]*}' "$WORK/events-$1.ns" 2>/dev/null \
    | sed -n 's/.*"type":"\([A-Z_]*\)".*"param":"\([^"]*\)".*/\1 \2/p; t; s/.*"type":"\([A-Z_]*\)".*/\1/p' || true
}

# baresip_wait_event EXT TYPE N SECONDS: until the phone has reported TYPE
# N times. Waiting for CALL_ESTABLISHED, a CALL_CLOSED #N fails at once.
baresip_wait_event() {
  local closed
  for _ in $(seq 1 $(( $4 * 20 ))); do
    [ "$(baresip_events "$1" | grep -c "^$2\b" || true)" -ge "$3" ] && return 0
    if [ "$2" = CALL_ESTABLISHED ]; then
      closed=$(baresip_events "$1" | { grep '^CALL_CLOSED' || true; } | sed -n "$3p")
      [ -n "$closed" ] && baresip_fail "baresip $1: call $3 closed before it was established: ${closed#CALL_CLOSED }"
    fi
    sleep 0.05
  done
  baresip_fail "baresip $1 did not report $2 (#$3) within $4 s"
}

# baresip_ctrl EXT COMMAND [PARAMS]: a ctrl_tcp command (a menu command's
# long name); its response must be ok within 5 s.
baresip_ctrl() {
  local token="$2-$1-$RANDOM" msg
  msg='{"command":"'"$2"'","params":"'"${3:-}"'","token":"'"$token"'"}'
  printf '%d:%s,' "${#msg}" "$msg" >&"${BARESIP_FD[$1]}" || baresip_fail "cannot write to baresip $1's ctrl_tcp"
  for _ in $(seq 1 100); do
    grep -q '"token":"'"$token"'"' "$WORK/events-$1.ns" && break
    sleep 0.05
  done
  grep -ao '{"response":true[^}]*}' "$WORK/events-$1.ns" | grep '"token":"'"$token"'"' | grep -q '"ok":true' \
    || baresip_fail "baresip $1 did not accept '$2 ${3:-}'"
}

# baresip_quit EXT: quit (its sndfile dumps get closed), within 5 s.
baresip_quit() {
  local msg='{"command":"quit","params":"","token":"quit"}'
  printf '%d:%s,' "${#msg}" "$msg" >&"${BARESIP_FD[$1]}" 2>/dev/null || true
}

# --- SIPp phones (the callee family; a script keeps their pids in PIDS) -----
PIDS=()

# free_udp_port: a UDP port on 127.0.0.1 nobody listens on.
free_udp_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(( 20000 + RANDOM % 20000 ))
    if ! ss -Hlun "sport = :$p" 2>/dev/null | grep -q .; then echo "$p"; return 0; fi
  done
  fail "no free UDP port found"
}

# show_msgs FILE: the start lines of a SIPp -trace_msg file (the first 30),
# with direction.
show_msgs() {
  [ -f "$1" ] || return 0
  awk '/message sent/ { dir = "  -> " } /message received/ { dir = "  <- " }
    /^(SIP\/2\.0 |[A-Z]+ [^ ]+ SIP\/2\.0)/ { print dir $0 }' "$1" | head -n 30 >&2
}

# sipp_fail NAME: the evidence of a failed SIPp run, then fail.
sipp_fail() {
  local name=$1
  echo "--- $name: messages (-> sent, <- received)" >&2
  show_msgs "$WORK/$name.msg"
  [ -s "$WORK/$name.err" ] && { echo "--- $name: SIPp errors (the first)" >&2; head -n 15 "$WORK/$name.err" >&2; }
  fail "$name"
}

# register EXT PORT: digest REGISTER from 127.0.0.1:PORT.
register() {
  sipp "127.0.0.1:$SB_UDP_PORT" -sf "$ROOT/tests/interop/scenarios/register.xml" -t u1 -i 127.0.0.1 -p "$2" \
    -s "$1" -au "$1" -ap "pw-$1-x" -m 1 -timeout 10s -timeout_error -nostdin \
    -trace_msg -message_file "$WORK/register-$1.msg" >/dev/null 2>&1 || sipp_fail "register-$1"
}

# callee SCENARIO EXT PORT CALLS: a SIPp UAS on PORT in the background
# (pid in LAST_PID) that exits 0 once CALLS calls went as SCENARIO says.
callee() {
  sipp -sf "$ROOT/tests/interop/scenarios/$1" -t u1 -i 127.0.0.1 -p "$3" -s "$2" -m "$4" -timeout 60s -timeout_error \
    -nostdin -trace_msg -message_file "$WORK/callee-$2.msg" -trace_err -error_file "$WORK/callee-$2.err" \
    >"$WORK/callee-$2.out" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
  for _ in $(seq 1 100); do
    ss -Hlun "sport = :$3" 2>/dev/null | grep -q . && return 0
    sleep 0.05
  done
  fail "the SIPp callee $2 did not bind 127.0.0.1:$3"
}

# wait_callee PID NAME: the callee must exit 0 within 30 s.
wait_callee() {
  local pid=$1 name=$2 rc=0
  for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -0 "$pid" 2>/dev/null && { kill -9 "$pid"; sipp_fail "$name (still waiting after 30 s)"; }
  wait "$pid" || rc=$?
  [ "$rc" -eq 0 ] || sipp_fail "$name"
}
