#!/usr/bin/env bash
# Keypresses cross a bridged call as each phone negotiated them (DTMF
# interworking, as Asterisk's dtmf_mode does it): baresip 1001, which sends
# and hears RFC 4733 events, calls 1002, a SIPp phone whose answer has no
# telephone-event and which does keypresses in SIP INFO only
# (scenarios/dtmf-uas.xml):
#   1. baresip presses 5: the SIPp phone must get INFO
#      (application/dtmf-relay, Signal=5), or its scenario fails;
#   2. the SIPp phone presses 7 in an INFO: baresip must report the key
#      (CALL_DTMF_START 7) and its SIP trace must show no INFO: it heard
#      RFC 4733 events in its RTP (it offered telephone-event);
#   3. baresip hangs up; the SIPp phone's BYE is answered.
# Everything on 127.0.0.1, every wait bounded, every process killed on exit.
source "$(dirname "$0")/common.bash"
command -v baresip >/dev/null || fail "baresip not installed (Debian package baresip)"
command -v sipp >/dev/null || fail "SIPp not installed (Debian package sip-tester)"

cleanup_dtmf() {
  local p
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
  baresip_cleanup
}
trap cleanup_dtmf EXIT

config='
[registrar]
qualify_interval = "0s"
'
for id in 1001 1002; do
  config+=$'\n[[extension]]\nid = "'"$id"$'"\npassword = "pw-'"$id"$'-x"\n'
done
start_server "" "$config"
baresip_start 1001 ausine,440
p1002=$(free_udp_port)
register 1002 "$p1002"
baresip_wait_registered 1001 1002
echo "baresip 1001 and SIPp 1002 registered"

callee dtmf-uas.xml 1002 "$p1002" 1
answering=$LAST_PID
baresip_ctrl 1001 dial 1002
baresip_wait_event 1001 CALL_ESTABLISHED 1 15
sleep 1
baresip_ctrl 1001 sndcode 5
echo "baresip pressed 5 (RFC 4733)"
baresip_wait_event 1001 CALL_DTMF_START 1 15
key=$(baresip_events 1001 | { grep '^CALL_DTMF_START' || true; } | head -n1)
[ "$key" = "CALL_DTMF_START 7" ] || baresip_fail "baresip 1001 heard '$key', expected the SIPp phone's 7"
# baresip's SIP trace shows every request it got: no INFO, so the 7 came
# in its RTP as RFC 4733 events.
if baresip_log 1001 | grep -q '^INFO sip:'; then
  baresip_fail "baresip 1001 got the 7 in an INFO, not as RFC 4733 events"
fi
echo "baresip heard the SIPp phone's INFO 7 as RFC 4733"
baresip_ctrl 1001 hangup
baresip_wait_event 1001 CALL_CLOSED 1 10
wait_callee "$answering" callee-1002
echo "the SIPp phone got baresip's 5 as INFO Signal=5, and the BYE"

grep -q "panicked" "$WORK/sb.log" && fail "a panic was logged"
stop_server
echo "ok: DTMF crossed RFC 4733 -> INFO and INFO -> RFC 4733 between baresip and SIPp"
