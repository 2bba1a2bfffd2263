#!/usr/bin/env bash
# Replays every RFC 4475 torture message (and every RFC 5118 one) at the
# release binary over UDP and over TCP, then checks the server is alive and
# still answers OPTIONS on both transports.
source "$(dirname "$0")/common.bash"
start_server
n=0
for f in "$ROOT"/tests/corpora/rfc4475/*.dat "$ROOT"/tests/corpora/rfc5118/*.dat; do
  cat "$f" > "/dev/udp/127.0.0.1/$SB_UDP_PORT"
  # Each message on its own TCP connection: a framing error closes it.
  exec 3<>"/dev/tcp/127.0.0.1/$SB_TCP_PORT"
  cat "$f" >&3
  exec 3<&- 3>&-
  n=$((n + 1))
done
sleep 1
kill -0 "$SB_PID" 2>/dev/null || fail "switchboard died during the replay"
sipp_options u1 "$SB_UDP_PORT" 20 20
sipp_options t1 "$SB_TCP_PORT" 20 20
grep -q "panicked" "$WORK/sb.log" && fail "a panic was logged"
stop_server
echo "ok: $n torture messages replayed over UDP and TCP; server still answers OPTIONS"
