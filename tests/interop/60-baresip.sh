#!/usr/bin/env bash
# Two baresip softphones register as 1001 and 1002 (UDP, digest) and call
# each other through Switchboard and the repository's dialplans/default.lua:
#   1. 1001 dials 1002, 1002 answers by itself (answermode=auto); both see
#      the call established; 1001 hangs up; both see it closed, 1002 by the
#      BYE ("Connection reset by peer"), and 1001's BYE got 200 OK;
#   2. the other way: 1002 dials 1001 and the callee, 1001, hangs up.
# Headless: no sound device (a 440 Hz sine as microphone, ALSA's null
# device as speaker), commands and call events through each instance's
# ctrl_tcp module (JSON netstrings on 127.0.0.1), SIP trace (-s) in its log.
# Everything on 127.0.0.1, every wait bounded, both instances killed on exit.
source "$(dirname "$0")/common.bash"
command -v baresip >/dev/null || fail "baresip not installed (Debian package baresip)"

PIDS=()
cleanup_baresip() {
  local p
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
  cleanup
}
trap cleanup_baresip EXIT

MODULES=""
for d in /usr/lib/*/baresip/modules /usr/lib/baresip/modules /usr/local/lib/baresip/modules; do
  [ -f "$d/ctrl_tcp.so" ] && { MODULES=$d; break; }
done
[ -n "$MODULES" ] || fail "baresip's modules (ctrl_tcp.so) not found"

port_free() { ! ss -Hlntu "sport = :$1" 2>/dev/null | grep -q .; }

# free_port_pair: a port P with P and P+1 free on UDP and TCP (baresip
# listens for SIP on UDP and TCP at P and for TLS at P+1).
free_port_pair() {
  local p
  for _ in $(seq 1 200); do
    p=$(( 20000 + RANDOM % 20000 ))
    port_free "$p" && port_free $((p + 1)) && { echo "$p"; return 0; }
  done
  fail "no free port found"
}

# dump_phone EXT: the end of a phone's log (SIP trace included) and its events.
dump_phone() {
  echo "--- baresip $1: log (end)" >&2
  tr '\r' '\n' < "$WORK/baresip-$1.log" | grep -av -e 'audio=' -e '^$' | sed 's/\x1b\[[0-9;]*m//g' | tail -n 60 >&2 || true
  echo "--- baresip $1: events" >&2
  events "$1" | tail -n 20 >&2 || true
}

phone_fail() {
  dump_phone 1001
  dump_phone 1002
  fail "$*"
}

# events EXT: the phone's ctrl_tcp events (flat JSON objects in
# netstrings), one "TYPE param" line each.
events() {
  grep -ao '{"event":true[^}]*}' "$WORK/events-$1.ns" 2>/dev/null \
    | sed -n 's/.*"type":"\([A-Z_]*\)".*"param":"\([^"]*\)".*/\1 \2/p; t; s/.*"type":"\([A-Z_]*\)".*/\1/p' || true
}

# wait_event EXT TYPE N SECONDS: until the phone has reported TYPE N times.
# Waiting for CALL_ESTABLISHED, a CALL_CLOSED #N fails at once.
wait_event() {
  local i closed
  for i in $(seq 1 $(( $4 * 20 ))); do
    [ "$(events "$1" | grep -c "^$2\b" || true)" -ge "$3" ] && return 0
    if [ "$2" = CALL_ESTABLISHED ]; then
      closed=$(events "$1" | { grep '^CALL_CLOSED' || true; } | sed -n "$3p")
      [ -n "$closed" ] && phone_fail "baresip $1: call $3 closed before it was established: ${closed#CALL_CLOSED }"
    fi
    sleep 0.05
  done
  phone_fail "baresip $1 did not report $2 (#$3) within $4 s"
}

# ctrl EXT COMMAND [PARAMS]: a ctrl_tcp command on the phone's connection;
# its response (in the same stream as the events) must be ok within 5 s.
ctrl() {
  local token="$2-$1-$RANDOM" msg
  msg='{"command":"'"$2"'","params":"'"${3:-}"'","token":"'"$token"'"}'
  printf '%d:%s,' "${#msg}" "$msg" >&"${FD[$1]}" || phone_fail "cannot write to baresip $1's ctrl_tcp"
  for _ in $(seq 1 100); do
    grep -q '"token":"'"$token"'"' "$WORK/events-$1.ns" && break
    sleep 0.05
  done
  grep -ao '{"response":true[^}]*}' "$WORK/events-$1.ns" | grep '"token":"'"$token"'"' | grep -q '"ok":true' \
    || phone_fail "baresip $1 did not accept '$2 ${3:-}'"
}

# the dialplan is the repository's (start_server)
config=""
for id in 1001 1002; do
  config+=$'\n[[extension]]\nid = "'"$id"$'"\npassword = "pw-'"$id"$'-x"\n'
done
start_server "" "$config"

declare -A CTRL
for ext in 1001 1002; do
  dir="$WORK/baresip-$ext"
  mkdir -p "$dir"
  sip=$(free_port_pair)
  ctrl=$(free_port_pair)
  rtp=$(( 40000 + RANDOM % 20000 ))
  CTRL[$ext]=$ctrl
  cat > "$dir/config" <<CONF
poll_method		epoll
net_interface		127.0.0.1
sip_listen		127.0.0.1:$sip
call_local_timeout	30
call_max_calls		4
audio_player		alsa,null
audio_alert		alsa,null
audio_source		ausine,440
ausrc_srate		48000
ausrc_channels		2
rtp_ports		$rtp-$((rtp + 99))
module_path		$MODULES
module			g711.so
module			ausine.so
module			alsa.so
module_tmp		account.so
module_app		menu.so
module_app		ctrl_tcp.so
ctrl_tcp_listen		127.0.0.1:$ctrl
CONF
  echo "<sip:$ext@127.0.0.1:$SB_UDP_PORT;transport=udp>;auth_pass=pw-$ext-x;answermode=auto;regint=600;audio_codecs=pcmu,pcma" \
    > "$dir/accounts"
  # -t 300: baresip quits by itself after 5 minutes, whatever happens here
  baresip -t 300 -s -f "$dir" </dev/null >"$WORK/baresip-$ext.log" 2>&1 &
  PIDS+=("$!")
done

# Each phone's ctrl_tcp up, then one connection to it (baresip 1.0's
# ctrl_tcp serves a single connection: the latest), kept open on fd 7
# (1001) or 8 (1002): commands are written to it and a reader keeps
# everything that comes back (responses and events) in events-EXT.ns.
declare -A FD=([1001]=7 [1002]=8)
for ext in 1001 1002; do
  for _ in $(seq 1 200); do
    port_free "${CTRL[$ext]}" || break
    sleep 0.05
  done
  port_free "${CTRL[$ext]}" && phone_fail "baresip $ext did not open ctrl_tcp within 10 s"
  eval "exec ${FD[$ext]}<>/dev/tcp/127.0.0.1/${CTRL[$ext]}" || phone_fail "cannot connect to baresip $ext's ctrl_tcp"
  cat <&"${FD[$ext]}" >"$WORK/events-$ext.ns" &
  PIDS+=("$!")
done

# Both registered: Switchboard lists both bindings.
for _ in $(seq 1 200); do
  regs=$(admin_get /api/v1/registrations)
  if grep -q '"aor":"sip:1001@' <<<"$regs" && grep -q '"aor":"sip:1002@' <<<"$regs"; then break; fi
  sleep 0.05
done
grep -q '"aor":"sip:1001@' <<<"$regs" && grep -q '"aor":"sip:1002@' <<<"$regs" \
  || { echo "$regs" >&2; phone_fail "baresip 1001 and 1002 did not both register within 10 s"; }
echo "baresip 1001 and 1002 registered"

# byes_answered EXT: how many 200 OKs to a BYE the phone's SIP trace shows.
byes_answered() {
  tr '\r' '\n' < "$WORK/baresip-$1.log" | awk '
    /^[A-Z]+ [^ ]+ SIP\/2\.0/ { code = "" }
    /^SIP\/2\.0 [0-9]+/ { code = $2 }
    /^CSeq: [0-9]+ BYE/ { if (code == "200") n++ }
    END { print n + 0 }'
}

# call CALLER CALLEE HANGUP N: CALLER dials CALLEE, both report the call
# established (their Nth), HANGUP hangs up after 2 s, both report it closed.
call() {
  local caller=$1 callee=$2 hangup=$3 n=$4 other byes
  other=$([ "$hangup" = "$caller" ] && echo "$callee" || echo "$caller")
  byes=$(( $(byes_answered "$hangup") + 1 ))
  ctrl "$caller" dial "$callee"
  wait_event "$caller" CALL_ESTABLISHED "$n" 15
  wait_event "$callee" CALL_ESTABLISHED "$n" 5
  sleep 2
  ctrl "$hangup" hangup
  wait_event "$hangup" CALL_CLOSED "$n" 10
  wait_event "$other" CALL_CLOSED "$n" 10
  # the other side was hung up by a BYE, not by a timeout or an error
  local reason
  reason=$(events "$other" | { grep '^CALL_CLOSED' || true; } | sed -n "${n}p")
  [ "$reason" = "CALL_CLOSED Connection reset by peer" ] \
    || phone_fail "baresip $other: call $n closed with '$reason', expected a BYE (Connection reset by peer)"
  for _ in $(seq 1 100); do [ "$(byes_answered "$hangup")" -ge "$byes" ] && break; sleep 0.05; done
  [ "$(byes_answered "$hangup")" -ge "$byes" ] || phone_fail "baresip $hangup: its BYE got no 200 OK"
  echo "call $n: $caller -> $callee established on both sides; $hangup hung up, BYE answered 200"
}

call 1001 1002 1001 1
call 1002 1001 1001 2

grep -q "panicked" "$WORK/sb.log" && fail "a panic was logged"
stop_server
echo "ok: two baresip phones called each other through default.lua (caller and callee hang-ups)"
