#!/usr/bin/env bash
# Subscriptions with real clients (RFC 6665):
#   1. baresip registers as 1001 and, by itself, subscribes to its own
#      message-summary (mwi module, RFC 3842) and to 1002's presence (the
#      contact module's `presence=p2p` contact, RFC 3856); it answers
#      Switchboard's 407 with its credentials, and accepts (200) the
#      NOTIFYs: the message-summary one and the PIDF one;
#   2. SIPp, as extension 1003's BLF key, subscribes to 1002's dialog
#      package (RFC 4235; scenarios/blf-subscribe.xml): 407, 200 and a
#      NOTIFY with the full dialog-info, then unsubscribes and gets the
#      final NOTIFY (terminated).
# Switchboard's GET /api/v1/subscriptions lists baresip's two
# subscriptions with the NOTIFYs sent. Everything on 127.0.0.1, every wait
# bounded, baresip killed on exit.
source "$(dirname "$0")/common.bash"
command -v baresip >/dev/null || fail "baresip not installed (Debian package baresip)"
command -v sipp >/dev/null || fail "sipp not installed (Debian package sip-tester)"
SCEN="$ROOT/tests/interop/scenarios"

PIDS=()
cleanup_presence() {
  local p
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
  cleanup
}
trap cleanup_presence EXIT

MODULES=""
for d in /usr/lib/*/baresip/modules /usr/lib/baresip/modules /usr/local/lib/baresip/modules; do
  [ -f "$d/mwi.so" ] && [ -f "$d/presence.so" ] && { MODULES=$d; break; }
done
[ -n "$MODULES" ] || fail "baresip's mwi and presence modules not found"

port_free() { ! ss -Hlntu "sport = :$1" 2>/dev/null | grep -q .; }
free_port_pair() {
  local p
  for _ in $(seq 1 200); do
    p=$(( 20000 + RANDOM % 20000 ))
    port_free "$p" && port_free $((p + 1)) && { echo "$p"; return 0; }
  done
  fail "no free port found"
}

phone_fail() {
  echo "--- baresip 1001: log (end)" >&2
  tr '\r' '\n' < "$WORK/baresip.log" | grep -av '^$' | sed 's/\x1b\[[0-9;]*m//g' | tail -n 80 >&2 || true
  fail "$*"
}

# notifies_accepted EVENT: how many 200 OKs to a NOTIFY of EVENT baresip's
# SIP trace shows it sent (the NOTIFY's Event header, then the 200 with
# the NOTIFY's CSeq).
notifies_accepted() {
  tr '\r' '\n' < "$WORK/baresip.log" | awk -v ev="$1" '
    /^NOTIFY / { notify = 1; event = ""; next }
    /^[A-Z]+ [^ ]+ SIP\/2\.0/ { notify = 0 }
    notify && /^Event: / { event = $2 }
    /^SIP\/2\.0 [0-9]+/ { code = $2; resp = 1; next }
    resp && /^CSeq: [0-9]+ NOTIFY/ { if (code == "200" && event == ev) n++; resp = 0 }
    END { print n + 0 }'
}

config=$'\n[registrar]\nqualify_interval = "0s"\n'
for id in 1001 1002 1003; do
  config+=$'\n[[extension]]\nid = "'"$id"$'"\npassword = "pw-'"$id"$'-x"\n'
done
start_server "" "$config"

# baresip 1.0's mwi module has a start-up race: a timer it arms when
# loaded re-subscribes every entry of its list while appending to that same
# list, so if the account's REGISTER succeeds before that timer fires (a
# busy machine) baresip spins for ever sending SUBSCRIBEs and never reads
# a response. So the phone starts with no account and neither module; over
# ctrl_tcp mwi is loaded (its timer fires on an empty list), then the
# account is created and registers, then presence is loaded (it
# subscribes to the contacts through the account that now exists).
dir="$WORK/baresip-1001"
mkdir -p "$dir"
sip=$(free_port_pair)
ctrl_port=$(free_port_pair)
cat > "$dir/config" <<CONF
poll_method		epoll
net_interface		127.0.0.1
sip_listen		127.0.0.1:$sip
module_path		$MODULES
module			g711.so
module_tmp		account.so
module_app		contact.so
module_app		menu.so
module_app		ctrl_tcp.so
ctrl_tcp_listen		127.0.0.1:$ctrl_port
CONF
: > "$dir/accounts"
echo "\"Extension 1002\" <sip:1002@127.0.0.1:$SB_UDP_PORT;transport=udp>;presence=p2p" > "$dir/contacts"
baresip -t 120 -s -f "$dir" </dev/null >"$WORK/baresip.log" 2>&1 &
PIDS+=("$!")

# ctrl_tcp up, then one connection to it on fd 7; a reader keeps what comes
# back (responses and events) in ctrl.ns.
for _ in $(seq 1 200); do port_free "$ctrl_port" || break; sleep 0.05; done
port_free "$ctrl_port" && phone_fail "baresip did not open ctrl_tcp within 10 s"
exec 7<>"/dev/tcp/127.0.0.1/$ctrl_port" || phone_fail "cannot connect to baresip's ctrl_tcp"
cat <&7 >"$WORK/ctrl.ns" &
PIDS+=("$!")

# ctrl COMMAND [PARAMS]: a ctrl_tcp command; its response must be ok
# within 5 s.
ctrl() {
  local token="$1-$RANDOM" msg
  msg='{"command":"'"$1"'","params":"'"${2:-}"'","token":"'"$token"'"}'
  printf '%d:%s,' "${#msg}" "$msg" >&7 || phone_fail "cannot write to baresip's ctrl_tcp"
  for _ in $(seq 1 100); do
    grep -q '"token":"'"$token"'"' "$WORK/ctrl.ns" && break
    sleep 0.05
  done
  grep -ao '{"response":true[^}]*}' "$WORK/ctrl.ns" | grep '"token":"'"$token"'"' | grep -q '"ok":true' \
    || phone_fail "baresip did not accept '$1 ${2:-}'"
}

ctrl insmod mwi
sleep 0.2
ctrl uanew "<sip:1001@127.0.0.1:$SB_UDP_PORT;transport=udp>;auth_pass=pw-1001-x;regint=600"
for _ in $(seq 1 200); do
  grep -q '"aor":"sip:1001@' <<<"$(admin_get /api/v1/registrations)" && break
  sleep 0.05
done
ctrl insmod presence

# Both subscriptions listed, each with at least its first NOTIFY sent.
for _ in $(seq 1 300); do
  subs=$(admin_get /api/v1/subscriptions)
  if grep -q '"subscriber":"1001","event":"message-summary","target":"1001"' <<<"$subs" \
    && grep -q '"subscriber":"1001","event":"presence","target":"1002"' <<<"$subs"; then break; fi
  sleep 0.05
done
grep -q '"event":"message-summary","target":"1001"' <<<"$subs" && grep -q '"event":"presence","target":"1002"' <<<"$subs" \
  || { echo "$subs" >&2; phone_fail "baresip did not subscribe to message-summary and presence within 15 s"; }
echo "baresip subscribed: $subs"

# baresip accepted the NOTIFYs (a refused one would also drop the subscription).
for ev in message-summary presence; do
  for _ in $(seq 1 200); do [ "$(notifies_accepted "$ev")" -ge 1 ] && break; sleep 0.05; done
  [ "$(notifies_accepted "$ev")" -ge 1 ] || phone_fail "baresip did not answer a $ev NOTIFY with 200"
done
subs=$(admin_get /api/v1/subscriptions)
grep -q '"event":"message-summary","target":"1001"' <<<"$subs" && grep -q '"event":"presence","target":"1002"' <<<"$subs" \
  || { echo "$subs" >&2; phone_fail "a subscription of baresip's was dropped"; }
echo "baresip accepted the message-summary and presence NOTIFYs (200)"

# SIPp as a BLF key: 1003 watches 1002's line, then lets go.
p=$(( 20000 + RANDOM % 20000 ))
sipp "127.0.0.1:$SB_UDP_PORT" -sf "$SCEN/blf-subscribe.xml" -t u1 -i 127.0.0.1 -p "$p" \
  -s 1002 -key watcher 1003 -au 1003 -ap pw-1003-x -m 1 -timeout 20s -timeout_error -nostdin \
  -trace_msg -message_file "$WORK/blf.msg" -trace_err -error_file "$WORK/blf.err" \
  >"$WORK/blf.out" 2>&1 || {
    awk '/message sent/ { d = "  -> " } /message received/ { d = "  <- " }
      /^(SIP\/2\.0 |[A-Z]+ [^ ]+ SIP\/2\.0)/ { print d $0 }' "$WORK/blf.msg" >&2 2>/dev/null || true
    [ -s "$WORK/blf.err" ] && head -n 15 "$WORK/blf.err" >&2
    fail "SIPp BLF subscribe/notify"
  }
echo "SIPp BLF key: subscribed to 1002's dialog state, got the dialog-info NOTIFY, unsubscribed (terminated)"

grep -q "panicked" "$WORK/sb.log" && fail "a panic was logged"
stop_server
echo "ok: baresip (message-summary, presence) and SIPp (dialog) subscriptions and NOTIFYs accepted"
