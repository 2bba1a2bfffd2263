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

trap baresip_cleanup EXIT

# the dialplan is the repository's (start_server); the phones are
# common.bash's baresip_start (ctrl_tcp, auto-answer, a 440 Hz sine)
config=""
for id in 1001 1002; do
  config+=$'\n[[extension]]\nid = "'"$id"$'"\npassword = "pw-'"$id"$'-x"\n'
done
start_server "" "$config"
for ext in 1001 1002; do baresip_start "$ext" ausine,440; done
baresip_wait_registered 1001 1002
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
  baresip_ctrl "$caller" dial "$callee"
  baresip_wait_event "$caller" CALL_ESTABLISHED "$n" 15
  baresip_wait_event "$callee" CALL_ESTABLISHED "$n" 5
  sleep 2
  baresip_ctrl "$hangup" hangup
  baresip_wait_event "$hangup" CALL_CLOSED "$n" 10
  baresip_wait_event "$other" CALL_CLOSED "$n" 10
  # the other side was hung up by a BYE, not by a timeout or an error
  local reason
  reason=$(baresip_events "$other" | { grep '^CALL_CLOSED' || true; } | sed -n "${n}p")
  [ "$reason" = "CALL_CLOSED Connection reset by peer" ] \
    || baresip_fail "baresip $other: call $n closed with '$reason', expected a BYE (Connection reset by peer)"
  for _ in $(seq 1 100); do [ "$(byes_answered "$hangup")" -ge "$byes" ] && break; sleep 0.05; done
  [ "$(byes_answered "$hangup")" -ge "$byes" ] || baresip_fail "baresip $hangup: its BYE got no 200 OK"
  echo "call $n: $caller -> $callee established on both sides; $hangup hung up, BYE answered 200"
}

call 1001 1002 1001 1
call 1002 1001 1001 2

grep -q "panicked" "$WORK/sb.log" && fail "a panic was logged"
stop_server
echo "ok: two baresip phones called each other through default.lua (caller and callee hang-ups)"
