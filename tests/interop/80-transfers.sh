#!/usr/bin/env bash
# Transfers with real softphones: three headless baresip phones register
# as 1001, 1002 and 1003 (UDP, digest; 1002 and 1003 answer by themselves)
# and call through Switchboard and the repository's dialplans/default.lua.
# Each phone's microphone is a sine of its own (ausine: 1001 700 Hz, 1002
# 1100 Hz, 1003 1700 Hz) and its sndfile module records what it hears; a
# Goertzel analysis (python3, standard library) labels each 100 ms of a
# recording with the tone in it, so "1001 heard 1003" is checked by
# frequency, in the audio that came out of the phone's decoder.
#   1. Blind: 1001 calls 1002; 1002 blind-transfers it to 1003 (menu
#      command `transfer 1003`: REFER, RFC 3515); 1003 answers, 1002 is
#      released, and 1001 hears 1100 Hz (1002) then 1700 Hz (1003) in its
#      one call while 1003 hears 700 Hz (1001).
#   2. Attended: 1001 calls 1002; 1002 holds it (`hold`: re-INVITE,
#      sendonly), calls 1003 (the consultation), selects the first call
#      (`line 1`) and transfers it to 1003 replacing the consultation
#      (REFER whose Refer-To carries Replaces, RFC 3891). baresip 1.0 has no
#      attended-transfer command, but its `transfer` sends the URI it is
#      given as the Refer-To: the script builds that URI from the
#      consultation's Call-ID and tags in 1002's SIP trace, as an
#      attended-transfer phone does. 1002's two calls are released; 1001
#      hears 1100 Hz, then (held) not 1002, then 1700 Hz (1003) in its one
#      call; 1003 hears 1100 Hz (1002) then 700 Hz (1001) in its one call.
# In both, 1002's REFER gets 202 and a NOTIFY whose sipfrag is 200 (its SIP
# trace); after the attended one 1001 and 1003 each get a request with a
# P-Asserted-Identity naming the other (a re-INVITE with the current SDP:
# baresip 1.0 does not list UPDATE in its Allow, so it gets no UPDATE).
# The phones use the baresip_* helpers of common.bash.
# Everything on 127.0.0.1, every wait bounded, the phones killed on exit.
source "$(dirname "$0")/common.bash"
command -v baresip >/dev/null || fail "baresip not installed (Debian package baresip)"
command -v python3 >/dev/null || fail "python3 not found (the analysis needs it)"
trap baresip_cleanup EXIT

config=""
for id in 1001 1002 1003; do
  config+=$'\n[[extension]]\nid = "'"$id"$'"\npassword = "pw-'"$id"$'-x"\n'
done
start_server "" "$config"

declare -A TONE=([1001]=700 [1002]=1100 [1003]=1700)
for ext in 1001 1002 1003; do baresip_start "$ext" "ausine,${TONE[$ext]}"; done
baresip_wait_registered 1001 1002 1003
echo "baresip 1001, 1002 and 1003 registered"

# labels FILE: one letter per 100 ms of a recording: a (700 Hz), b (1100
# Hz), c (1700 Hz) when that tone holds most of the block's energy, "."
# quiet, "?" loud and something else (music on hold, a mix).
labels() {
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
s = struct.unpack("<%dh" % (len(pcm) // 2), pcm)[::ch]   # the first channel

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
    out.append(next((l for l, f in (("a", 700), ("b", 1100), ("c", 1700)) if share(b, f) >= 0.8), "?"))
print("".join(out))
PY
}

# heard EXT PHASE PATTERN WHAT: the phone's one recording of what it heard
# (its call of this phase) matches PATTERN (an ERE over the labels).
heard() {
  local ext=$1 phase=$2 pattern=$3 what=$4 dumps l
  dumps=("$WORK/baresip-$ext/dumps/$phase"/dump-*-dec.wav)
  [ "${#dumps[@]}" -eq 1 ] && [ -f "${dumps[0]}" ] \
    || baresip_fail "baresip $ext: expected one recording of what it heard in $phase, found: $(ls "$WORK/baresip-$ext/dumps/$phase")"
  l=$(labels "${dumps[0]}") || baresip_fail "baresip $ext: cannot read ${dumps[0]}"
  echo "  $ext heard: $l"
  grep -Eq "$pattern" <<<"$l" || baresip_fail "baresip $ext did not hear $what ($phase; a=700 Hz 1001, b=1100 Hz 1002, c=1700 Hz 1003)"
}

# file_dumps PHASE: move the recordings of the finished calls out of the way.
file_dumps() {
  local ext
  sleep 0.5
  for ext in 1001 1002 1003; do
    mkdir -p "$WORK/baresip-$ext/dumps/$1"
    find "$WORK/baresip-$ext/dumps" -maxdepth 1 -name 'dump-*.wav' -exec mv {} "$WORK/baresip-$ext/dumps/$1/" \;
  done
}

# closed_by_bye EXT N: the phone's Nth call ended by the other side's BYE.
closed_by_bye() {
  local reason
  reason=$(baresip_events "$1" | { grep '^CALL_CLOSED' || true; } | sed -n "$2p")
  [ "$reason" = "CALL_CLOSED Connection reset by peer" ] \
    || baresip_fail "baresip $1: call $2 closed with '$reason', expected a BYE (Connection reset by peer)"
}

# sip_trace EXT [FROM]: the phone's SIP trace from line FROM on, one message
# header line each (request or status line, CSeq, Refer-To, PAI, sipfrag).
sip_trace() {
  baresip_log "$1" | tail -n +"${2:-1}" \
    | grep -aE '^([A-Z]+ sip:[^ ]* SIP/2\.0|SIP/2\.0 [0-9]+|CSeq:|Refer-To:|P-Asserted-Identity:)' || true
}
log_lines() { baresip_log "$1" | wc -l; }

# refer_ok EXT FROM: the phone's REFER (after line FROM) got 202 and a
# NOTIFY whose message/sipfrag body reports 200.
refer_ok() {
  sip_trace "$1" "$2" | awk '
    /^SIP\/2\.0 [0-9]+/ { code = $2 } /^[A-Z]+ sip:/ { code = ""; req = $1 }
    /^CSeq: [0-9]+ REFER/ && code == "202" { accepted = 1 }
    req == "NOTIFY" && /^SIP\/2\.0 200/ { done = 1 }
    END { exit !(accepted && done) }' \
    || baresip_fail "baresip $1: its REFER did not get 202 and a NOTIFY of 200 (RFC 3515)"
}

# --- 1. Blind transfer --------------------------------------------------------
baresip_ctrl 1001 dial 1002
baresip_wait_event 1001 CALL_ESTABLISHED 1 15
baresip_wait_event 1002 CALL_ESTABLISHED 1 5
echo "blind: 1001 -> 1002 established; talking 2 s"
sleep 2
blind_mark=$(log_lines 1002)
baresip_ctrl 1002 transfer 1003
baresip_wait_event 1003 CALL_ESTABLISHED 1 15
baresip_wait_event 1002 CALL_CLOSED 1 10
echo "blind: 1002 transferred 1001 to 1003: 1003 answered, 1002 released; talking 3 s"
sleep 3
baresip_events 1001 | grep -q '^CALL_CLOSED' && baresip_fail "baresip 1001's call closed during the transfer"
baresip_ctrl 1001 hangup
baresip_wait_event 1001 CALL_CLOSED 1 10
baresip_wait_event 1003 CALL_CLOSED 1 10
closed_by_bye 1003 1
refer_ok 1002 "$blind_mark"
file_dumps blind
heard 1001 blind 'b{10,}.*c{20,}' "1002 then 1003"
heard 1003 blind 'a{20,}' "1001"
echo "blind: ok (1001 heard 1002 then 1003 in one call, 1003 heard 1001)"

# --- 2. Attended transfer -----------------------------------------------------
# consult_dialog: "Call-ID from-tag to-tag" of 1002's last answered INVITE to
# 1003 (the 200 OK it got), from its SIP trace.
consult_dialog() {
  baresip_log 1002 | awk '
    function flush() { if (ok && inv && to ~ /sip:1003@/) { r = cid " " ft " " tt } }
    function tag(h) { if (h !~ /;tag=/) return ""; sub(/.*;tag=/, "", h); sub(/[;> ].*/, "", h); return h }
    /^SIP\/2\.0 [0-9]+/ { flush(); ok = ($2 == "200"); inv = 0; cid = ft = tt = to = ""; next }
    /^[A-Z]+ [^ ]+ SIP\/2\.0/ { flush(); ok = 0; next }
    /^(Call-ID|i):/ { cid = $2 }
    /^(From|f):/ { ft = tag($0) }
    /^(To|t):/ { to = $0; tt = tag($0) }
    /^CSeq: [0-9]+ INVITE/ { inv = 1 }
    END { flush(); print r }'
}

baresip_ctrl 1001 dial 1002
baresip_wait_event 1001 CALL_ESTABLISHED 2 15
baresip_wait_event 1002 CALL_ESTABLISHED 2 5
echo "attended: 1001 -> 1002 established; talking 2 s"
sleep 2
baresip_ctrl 1002 hold
sleep 1
baresip_ctrl 1002 dial 1003
baresip_wait_event 1002 CALL_ESTABLISHED 3 15
baresip_wait_event 1003 CALL_ESTABLISHED 2 5
echo "attended: 1002 held 1001 and consults 1003; talking 2 s"
sleep 2
read -r cid ftag ttag <<<"$(consult_dialog)"
[ -n "${cid:-}" ] && [ -n "${ftag:-}" ] && [ -n "${ttag:-}" ] \
  || baresip_fail "no answered INVITE to 1003 (Call-ID, tags) in 1002's SIP trace"
replaces="${cid//@/%40}%3Bto-tag%3D$ttag%3Bfrom-tag%3D$ftag"
declare -A mark
for ext in 1001 1002 1003; do mark[$ext]=$(log_lines "$ext"); done
baresip_ctrl 1002 line 1
baresip_ctrl 1002 transfer "<sip:1003@127.0.0.1:$SB_UDP_PORT?Replaces=$replaces>"
baresip_wait_event 1002 CALL_CLOSED 3 10
echo "attended: 1002 referred 1001 to 1003 replacing the consultation ($cid); 1002 released"
sleep 3
baresip_events 1001 | { grep '^CALL_CLOSED' || true; } | sed -n 2p | grep -q . \
  && baresip_fail "baresip 1001's call closed during the transfer"
baresip_events 1003 | { grep '^CALL_CLOSED' || true; } | sed -n 2p | grep -q . \
  && baresip_fail "baresip 1003's call closed during the transfer"
baresip_ctrl 1001 hangup
baresip_wait_event 1001 CALL_CLOSED 2 10
baresip_wait_event 1003 CALL_CLOSED 2 10
closed_by_bye 1003 2
refer_ok 1002 "${mark[1002]}"
sip_trace 1002 "${mark[1002]}" | grep -q '^Refer-To: <sip:1003@.*?Replaces=' \
  || baresip_fail "baresip 1002's REFER had no Replaces in its Refer-To"
# Switchboard tells both remaining phones who they talk to now (it sends
# UPDATE; baresip 1.0 answers 501, see the report of issue 12).
sip_trace 1001 "${mark[1001]}" | grep -q '^P-Asserted-Identity: <sip:1003@' \
  || baresip_fail "baresip 1001 was not told (P-Asserted-Identity) it now talks to 1003"
sip_trace 1003 "${mark[1003]}" | grep -q '^P-Asserted-Identity: <sip:1001@' \
  || baresip_fail "baresip 1003 was not told (P-Asserted-Identity) it now talks to 1001"
file_dumps attended
heard 1001 attended 'b{10,}.*c{20,}' "1002 then 1003"
heard 1003 attended 'b{10,}.*a{20,}' "1002 then 1001"
echo "attended: ok (1001 heard 1002 then 1003 in one call, 1003 heard 1002 then 1001 in one call)"

grep -q "panicked" "$WORK/sb.log" && fail "a panic was logged"
stop_server
echo "ok: baresip phones did a blind and an attended transfer through Switchboard, audio checked both ways by frequency"
