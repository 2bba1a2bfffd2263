#!/usr/bin/env bash
# Echo test end to end: a headless baresip registers as 1001 (UDP, digest),
# dials 600 (the repository's dialplans/default.lua answers it with
# call:answer(); call:echo()), talks for about 5 s and hangs up. What it
# hears back must be what it said:
#   - its microphone is baresip's aufile module playing a WAV made here
#     (8 kHz mono 16-bit: 0.5 s silence, 1.5 s of 1 kHz, 1.5 s of 2 kHz,
#     then silence), sent as PCMU;
#   - its sndfile module dumps the audio it sends (dump-*-enc.wav) and the
#     audio it receives, decoded (dump-*-dec.wav); baresip 1.0's aufile is
#     a source only, so sndfile is the recorder (the speaker is ALSA's null);
#   - python3 (standard library only) cuts both dumps into 100 ms blocks
#     and measures each block's level and, by the Goertzel algorithm, the
#     share of its energy at 1 kHz and at 2 kHz. The received audio must
#     have the 1 kHz tone for about 1.5 s, then the 2 kHz tone for about
#     1.5 s, at about the level sent, and nothing else loud.
# Also: the SDP of the 200 OK baresip got names Switchboard (127.0.0.1 and
# a port of its [media] rtp_ports) and the RTP baresip got came from that
# address and port, i.e. the media went through the PBX; baresip's BYE got
# 200 OK. Everything on 127.0.0.1, every wait bounded, baresip killed on
# exit. python3 is on every machine .ci/run sets up (sipvicious needs it).
source "$(dirname "$0")/common.bash"
command -v baresip >/dev/null || fail "baresip not installed (Debian package baresip)"
command -v python3 >/dev/null || fail "python3 not found (the analysis needs it)"

PIDS=()
cleanup_echo() {
  local p
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
  cleanup
}
trap cleanup_echo EXIT

MODULES=""
for d in /usr/lib/*/baresip/modules /usr/lib/baresip/modules /usr/local/lib/baresip/modules; do
  [ -f "$d/ctrl_tcp.so" ] && { MODULES=$d; break; }
done
[ -n "$MODULES" ] || fail "baresip's modules (ctrl_tcp.so) not found"
for m in aufile sndfile g711 alsa; do
  [ -f "$MODULES/$m.so" ] || fail "baresip module $m.so not found in $MODULES"
done

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

# free_range BASE: an even port P in BASE..BASE+9999 with P..P+19 all
# free on UDP (a call needs a pair).
free_range() {
  local p used
  for _ in $(seq 1 500); do
    p=$(( ($1 + RANDOM % 9980) & ~1 ))
    used=$(ss -Hanu 2>/dev/null | awk -v lo="$p" -v hi=$((p + 19)) '
      { n = split($4, a, ":"); port = a[n] + 0; if (port >= lo && port <= hi) c++ } END { print c + 0 }')
    [ "$used" -eq 0 ] && { echo "$p"; return 0; }
  done
  fail "no free port range found"
}

PHONE="$WORK/baresip"
mkdir -p "$PHONE/dumps"

phone_log() { tr '\r' '\n' < "$WORK/baresip.log" | grep -av -e 'audio=' -e '^$' | sed 's/\x1b\[[0-9;]*m//g'; }

phone_fail() {
  echo "--- baresip: log (end)" >&2
  phone_log | tail -n 60 >&2 || true
  echo "--- baresip: events" >&2
  events | tail -n 20 >&2 || true
  fail "$*"
}

# events: the phone's ctrl_tcp events (flat JSON objects in netstrings),
# one "TYPE param" line each.
events() {
  grep -ao '{"event":true[^}]*}' "$WORK/events.ns" 2>/dev/null \
    | sed -n 's/.*"type":"\([A-Z_]*\)".*"param":"\([^"]*\)".*/\1 \2/p; t; s/.*"type":"\([A-Z_]*\)".*/\1/p' || true
}

# wait_event TYPE SECONDS: until the phone has reported TYPE. Waiting for
# CALL_ESTABLISHED, a CALL_CLOSED fails at once.
wait_event() {
  local closed
  for _ in $(seq 1 $(( $2 * 20 ))); do
    events | grep -q "^$1\b" && return 0
    if [ "$1" = CALL_ESTABLISHED ]; then
      closed=$(events | { grep '^CALL_CLOSED' || true; } | head -n1)
      [ -n "$closed" ] && phone_fail "the call closed before it was established: ${closed#CALL_CLOSED }"
    fi
    sleep 0.05
  done
  phone_fail "baresip did not report $1 within $2 s"
}

# ctrl COMMAND [PARAMS]: a ctrl_tcp command; its response (in the same
# stream as the events) must be ok within 5 s.
ctrl() {
  local token="$1-$RANDOM" msg
  msg='{"command":"'"$1"'","params":"'"${2:-}"'","token":"'"$token"'"}'
  printf '%d:%s,' "${#msg}" "$msg" >&7 || phone_fail "cannot write to baresip's ctrl_tcp"
  for _ in $(seq 1 100); do
    grep -q '"token":"'"$token"'"' "$WORK/events.ns" && break
    sleep 0.05
  done
  grep -ao '{"response":true[^}]*}' "$WORK/events.ns" | grep '"token":"'"$token"'"' | grep -q '"ok":true' \
    || phone_fail "baresip did not accept '$1 ${2:-}'"
}

# --- The test signal -------------------------------------------------------
python3 - "$PHONE/in.wav" <<'PY' || fail "could not write the test WAV"
import math, struct, sys, wave
RATE, AMP = 8000, 0.4 * 32767
parts = [(0, 0.5), (1000, 1.5), (2000, 1.5), (0, 3.5)]   # (Hz, seconds); 0 = silence
samples = []
for freq, secs in parts:
    for n in range(int(secs * RATE)):
        samples.append(int(round(AMP * math.sin(2 * math.pi * freq * n / RATE))) if freq else 0)
with wave.open(sys.argv[1], "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(RATE)
    w.writeframes(struct.pack("<%dh" % len(samples), *samples))
PY

# --- Switchboard: 1001 and the media range -------------------------------
SB_RTP=$(free_range 30000)
[ -n "$SB_RTP" ] || fail "no free port range for Switchboard's RTP"
start_server "" "
[[extension]]
id = \"1001\"
password = \"pw-1001-x\"

[media]
bind = \"127.0.0.1\"
rtp_ports = \"$SB_RTP-$((SB_RTP + 19))\"
"

# --- baresip ------------------------------------------------------------------
sip=$(free_port_pair)
ctrl_port=$(free_port_pair)
rtp=$(free_range 40000)
[ -n "$rtp" ] || fail "no free port range for baresip's RTP"
cat > "$PHONE/config" <<CONF
poll_method		epoll
net_interface		127.0.0.1
sip_listen		127.0.0.1:$sip
call_local_timeout	30
call_max_calls		4
audio_player		alsa,null
audio_alert		alsa,null
audio_source		aufile,$PHONE/in.wav
ausrc_srate		8000
ausrc_channels		1
rtp_ports		$rtp-$((rtp + 19))
module_path		$MODULES
module			g711.so
module			aufile.so
module			alsa.so
module			sndfile.so
snd_path		$PHONE/dumps
module_tmp		account.so
module_app		menu.so
module_app		ctrl_tcp.so
ctrl_tcp_listen		127.0.0.1:$ctrl_port
CONF
echo "<sip:1001@127.0.0.1:$SB_UDP_PORT;transport=udp>;auth_pass=pw-1001-x;regint=600;audio_codecs=pcmu" \
  > "$PHONE/accounts"
# -t 120: baresip quits by itself after 2 minutes, whatever happens here
baresip -t 120 -s -f "$PHONE" </dev/null >"$WORK/baresip.log" 2>&1 &
BARESIP_PID=$!
PIDS+=("$BARESIP_PID")

# ctrl_tcp up, then one connection to it on fd 7; a reader keeps what comes
# back (responses and events) in events.ns.
for _ in $(seq 1 200); do
  port_free "$ctrl_port" || break
  kill -0 "$BARESIP_PID" 2>/dev/null || phone_fail "baresip exited during start-up"
  sleep 0.05
done
port_free "$ctrl_port" && phone_fail "baresip did not open ctrl_tcp within 10 s"
exec 7<>"/dev/tcp/127.0.0.1/$ctrl_port" || phone_fail "cannot connect to baresip's ctrl_tcp"
cat <&7 >"$WORK/events.ns" &
PIDS+=("$!")

for _ in $(seq 1 200); do
  regs=$(admin_get /api/v1/registrations)
  grep -q '"aor":"sip:1001@' <<<"$regs" && break
  sleep 0.05
done
grep -q '"aor":"sip:1001@' <<<"$regs" || { echo "$regs" >&2; phone_fail "baresip did not register within 10 s"; }
echo "baresip registered as 1001; Switchboard's RTP ports: $SB_RTP-$((SB_RTP + 19)), baresip's: $rtp-$((rtp + 19))"

# byes_answered: how many 200 OKs to a BYE the phone's SIP trace shows.
byes_answered() {
  tr '\r' '\n' < "$WORK/baresip.log" | awk '
    /^[A-Z]+ [^ ]+ SIP\/2\.0/ { code = "" }
    /^SIP\/2\.0 [0-9]+/ { code = $2 }
    /^CSeq: [0-9]+ BYE/ { if (code == "200") n++ }
    END { print n + 0 }'
}

# --- The call -----------------------------------------------------------------
ctrl dial 600
wait_event CALL_ESTABLISHED 15
echo "call to 600 established; talking for 5 s"
sleep 5
ctrl hangup
wait_event CALL_CLOSED 10
for _ in $(seq 1 100); do [ "$(byes_answered)" -ge 1 ] && break; sleep 0.05; done
[ "$(byes_answered)" -ge 1 ] || phone_fail "baresip's BYE got no 200 OK"
echo "hung up; the BYE got 200 OK"

# The SDP answer baresip got (the 200 OK to its INVITE) names Switchboard:
# c=IN IP4 127.0.0.1 and m=audio on a port of Switchboard's range.
answer=$(tr '\r' '\n' < "$WORK/baresip.log" | sed 's/\x1b\[[0-9;]*m//g' | awk '
  /^(UDP|TCP) .* -> / || /^[A-Z]+ [^ ]+ SIP\/2\.0/ { in200 = 0; invite = 0 }
  /^SIP\/2\.0 [0-9]+/ { in200 = ($2 == "200"); invite = 0 }
  in200 && /^CSeq: [0-9]+ INVITE/ { invite = 1 }
  in200 && invite && /^(c=|m=audio)/ { print }' | head -n 2)
sdp_port=$(sed -n 's/^m=audio \([0-9]*\) .*/\1/p' <<<"$answer" | head -n1)
sdp_addr=$(sed -n 's/^c=IN IP4 \([0-9.]*\).*/\1/p' <<<"$answer" | head -n1)
[ -n "$sdp_port" ] || phone_fail "no SDP answer (m=audio) found in baresip's SIP trace"
[ "$sdp_addr" = 127.0.0.1 ] || phone_fail "the SDP answer's c= is '$sdp_addr', expected 127.0.0.1"
[ "$sdp_port" -ge "$SB_RTP" ] && [ "$sdp_port" -le $((SB_RTP + 19)) ] \
  || phone_fail "the SDP answer's m=audio port $sdp_port is not in Switchboard's rtp_ports $SB_RTP-$((SB_RTP + 19))"
# and the RTP baresip got came from there (symmetric RTP)
rtp_from=$(phone_log | sed -n "s/.*incoming rtp for 'audio' established, receiving from \([0-9.:]*\).*/\1/p" | head -n1)
[ -n "$rtp_from" ] || phone_fail "baresip received no RTP at all"
[ "$rtp_from" = "$sdp_addr:$sdp_port" ] \
  || phone_fail "baresip received RTP from '$rtp_from', expected it from the SDP answer's $sdp_addr:$sdp_port"
echo "SDP answer: media at $sdp_addr:$sdp_port (Switchboard's range); the RTP baresip got came from there"

# baresip quits (its dumps are closed with the call; quitting makes sure).
msg='{"command":"quit","params":"","token":"quit"}'
printf '%d:%s,' "${#msg}" "$msg" >&7 2>/dev/null || true
for _ in $(seq 1 100); do kill -0 "$BARESIP_PID" 2>/dev/null || break; sleep 0.05; done
kill -0 "$BARESIP_PID" 2>/dev/null && phone_fail "baresip did not quit within 5 s"

shopt -s nullglob
enc=("$PHONE"/dumps/dump-*-enc.wav)
dec=("$PHONE"/dumps/dump-*-dec.wav)
shopt -u nullglob
[ "${#enc[@]}" -eq 1 ] && [ "${#dec[@]}" -eq 1 ] \
  || phone_fail "expected one sent and one received dump from baresip's sndfile, found: $(ls "$PHONE/dumps")"

# --- The analysis ---------------------------------------------------------------
python3 - "${enc[0]}" "${dec[0]}" <<'PY' || phone_fail "the audio baresip got back is not the audio it sent (figures above)"
import math, struct, sys

def read_wav(path):
    """16-bit mono PCM samples and the rate, from the RIFF chunks (a data
    size of 0, from a file that was not closed, means: up to the end)."""
    data = open(path, "rb").read()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        sys.exit("%s: not a WAV file" % path)
    pos, rate, pcm = 12, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = data[pos + 8:pos + 8 + size] if size else data[pos + 8:]
        if cid == b"fmt ":
            fmt, ch, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if fmt != 1 or ch != 1 or bits != 16:
                sys.exit("%s: format %d, %d channels, %d bits; expected 16-bit mono PCM" % (path, fmt, ch, bits))
        elif cid == b"data":
            pcm = body[:len(body) // 2 * 2]
            break
        pos += 8 + size + (size & 1)
    if rate is None or pcm is None:
        sys.exit("%s: no fmt or data chunk" % path)
    return rate, struct.unpack("<%dh" % (len(pcm) // 2), pcm)

def goertzel_share(block, freq, rate):
    """The share of the block's energy at freq (1.0: a pure tone)."""
    n = len(block)
    k = round(freq * n / rate)
    coeff = 2 * math.cos(2 * math.pi * k / n)
    s1 = s2 = 0.0
    for x in block:
        s1, s2 = x + coeff * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - coeff * s1 * s2
    energy = sum(x * x for x in block)
    return power / (n / 2 * energy) if energy else 0.0

SENT_RMS = 0.4 * 32767 / math.sqrt(2)
LOUD = SENT_RMS / 4          # a block this loud is sound, not silence
PURE = 0.8                   # a tone block has this share at its frequency

def analyse(name, path):
    rate, s = read_wav(path)
    n = rate // 10                              # 100 ms blocks
    labels, figures = [], {"1k": [], "2k": []}
    for i in range(len(s) // n):
        b = s[i * n:(i + 1) * n]
        rms = math.sqrt(sum(x * x for x in b) / n)
        if rms < LOUD:
            labels.append(".")
            continue
        s1, s2 = goertzel_share(b, 1000, rate), goertzel_share(b, 2000, rate)
        if s1 >= PURE:
            labels.append("1"); figures["1k"].append((rms, s1))
        elif s2 >= PURE:
            labels.append("2"); figures["2k"].append((rms, s2))
        else:
            labels.append("?")
    print("%s: %s, %d Hz, %.2f s, blocks of 100 ms (. quiet, 1 = 1 kHz, 2 = 2 kHz, ? = loud other):"
          % (name, path.rsplit("/", 1)[-1], rate, len(s) / rate))
    print("  " + "".join(labels))
    for tone in ("1k", "2k"):
        f = figures[tone]
        if f:
            print("  %s: %d blocks, rms %.0f-%.0f (sent %.0f), energy share at the tone %.4f-%.4f"
                  % (tone, len(f), min(r for r, _ in f), max(r for r, _ in f), SENT_RMS,
                     min(p for _, p in f), max(p for _, p in f)))
    return "".join(labels), figures

errors = []
for name, path in (("sent", sys.argv[1]), ("received", sys.argv[2])):
    labels, figures = analyse(name, path)
    ones, twos, other = labels.count("1"), labels.count("2"), labels.count("?")
    # 15 blocks of each were sent; a block straddling an edge may be "?"
    if ones < 12:
        errors.append("%s: %d blocks of 1 kHz, expected about 15" % (name, ones))
    if twos < 12:
        errors.append("%s: %d blocks of 2 kHz, expected about 15" % (name, twos))
    if ones and twos and labels.rfind("1") > labels.find("2"):
        errors.append("%s: the 1 kHz and 2 kHz tones are not in that order" % name)
    if other > 3:
        errors.append("%s: %d loud blocks that are neither tone" % (name, other))
    for tone, f in figures.items():
        for rms, _ in f:
            if not SENT_RMS / 2 <= rms <= SENT_RMS * 1.5:
                errors.append("%s: a %s block at rms %.0f, sent at %.0f" % (name, tone, rms, SENT_RMS))
                break
for e in errors:
    print("ERROR: " + e)
sys.exit(1 if errors else 0)
PY

grep -q "panicked" "$WORK/sb.log" && fail "a panic was logged"
stop_server
echo "ok: baresip called 600 through default.lua and got back the 1 kHz then 2 kHz tones it sent, through Switchboard's RTP ports"
