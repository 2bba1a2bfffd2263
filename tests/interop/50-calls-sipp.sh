#!/usr/bin/env bash
# Calls through the B2BUA and the repository's dialplans/default.lua, with
# SIPp on both sides. Extensions 1001 (the caller), 1002 (a callee that
# answers), 1003 (never registered) and 1004 (a callee that only rings).
# Each callee registers with digest from a fixed local port, then a SIPp
# UAS serves calls on that same port (the server sends INVITEs to the
# source address of the REGISTER). The caller authenticates every INVITE
# (407, then credentials with -au/-ap) and:
#   - 20 calls 1001 -> 1002 (180, 200, ACK, 200 ms, BYE, 200) all succeed,
#     and the callee saw all 20;
#   - a call to 5555 (no such number) is refused with 404;
#   - a call to 1003 (an extension with no phone registered) goes to its
#     voicemail (the shipped dialplan): answered, greeting, the caller
#     hangs up before the beep (nothing is kept);
#   - a call to 1004 that the caller cancels while it rings gets 200 for
#     the CANCEL and 487 for the INVITE, and the callee is cancelled too.
# A failing step prints the start lines of what the caller sent and got.
source "$(dirname "$0")/common.bash"
SCEN="$ROOT/tests/interop/scenarios"
PIDS=()

cleanup_calls() {
  local p
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
  cleanup
}
trap cleanup_calls EXIT

# caller NAME SCENARIO TO [sipp options...]: calls from 1001 to TO; must exit 0.
caller() {
  local name=$1 scenario=$2 to=$3
  shift 3
  sipp "127.0.0.1:$SB_UDP_PORT" -sf "$scenario" -t u1 -i 127.0.0.1 -p "$(free_udp_port)" \
    -s "$to" -key caller 1001 -au 1001 -ap pw-1001-x -timeout 60s -timeout_error -nostdin \
    -trace_msg -message_file "$WORK/$name.msg" -trace_err -error_file "$WORK/$name.err" "$@" \
    >"$WORK/$name.out" 2>&1 || sipp_fail "$name"
}

# qualify_interval = "0s": no OPTIONS ping may reach the SIPp callees,
# which answer calls only (and count what they receive). The dialplan is
# the repository's (start_server).
config='
[registrar]
qualify_interval = "0s"
'
for id in 1001 1002 1003 1004; do
  config+=$'\n[[extension]]\nid = "'"$id"$'"\npassword = "pw-'"$id"$'-x"\n'
done
start_server "" "$config"

p1002=$(free_udp_port)
register 1002 "$p1002"
p1004=$(free_udp_port)
register 1004 "$p1004"

# 20 answered calls.
callee call-uas.xml 1002 "$p1002" 20
answering=$LAST_PID
caller calls-1002 "$SCEN/call-uac.xml" 1002 -m 20 -r 10 -d 200
wait_callee "$answering" callee-1002
echo "20 calls 1001 -> 1002 answered and hung up"

# Refused calls.
sed 's/@STATUS@/404/g' "$SCEN/call-rejected.xml.in" > "$WORK/rejected-404.xml"
caller unknown-5555 "$WORK/rejected-404.xml" 5555 -m 1
echo "a call to 5555 was refused with 404"
# Nothing but voicemail answers a call to an extension with no phone; a
# prompt it could not play would be logged as an ERROR and end the call.
caller unregistered-1003 "$SCEN/call-uac.xml" 1003 -m 1 -d 500
if grep -q 'ERROR' "$WORK/sb.log"; then
  grep 'ERROR' "$WORK/sb.log" >&2
  fail "an error was logged"
fi
echo "a call to 1003 (not registered) went to its voicemail and was hung up"


# The caller cancels while 1004 rings.
callee call-uas-ring.xml 1004 "$p1004" 1
ringing=$LAST_PID
caller cancel-1004 "$SCEN/call-cancel-uac.xml" 1004 -m 1
wait_callee "$ringing" callee-1004
echo "a call to 1004 cancelled while ringing: 200 for the CANCEL, 487 for the INVITE, callee cancelled"

grep -q "panicked" "$WORK/sb.log" && fail "a panic was logged"
stop_server
echo "ok: SIPp calls through default.lua: 20 answered, 404, voicemail, CANCEL/487"
