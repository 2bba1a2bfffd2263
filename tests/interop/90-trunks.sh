#!/usr/bin/env bash
# Trunks (issue 13) against other implementations, with the repository's
# dialplans/default.lua:
#   - SIPp as the carrier of trunk "carrier": 1001 (a SIPp caller with
#     outbound = true) dials 95557654321; the carrier challenges the
#     office's INVITE with 407 and checks the digest the office answers
#     with (trunk-carrier-407.xml), answers, and gets the BYE;
#   - SIPp as that carrier delivering a call from its address (127.0.0.2,
#     the trunk's match) to the DID +15550001001: no challenge, 1001's
#     registered SIPp phone answers (default.lua: a DID rings the extension
#     that owns it);
#   - Kamailio 5 as a registrar provider (a minimal config: digest with
#     pv_www_authenticate, save("location"), on 127.0.0.3) that trunk
#     "provider" registers to: GET /api/v1/trunks says registered and
#     Kamailio logged the binding; a shutdown unregisters (Expires 0).
# Every process started here is killed on exit; each step is bounded.
source "$(dirname "$0")/common.bash"
SCEN="$ROOT/tests/interop/scenarios"
PIDS=()
KAM_PID=""

cleanup_trunks() {
  local p
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
  # SIGTERM: Kamailio's main process stops its children too.
  if [ -n "$KAM_PID" ] && kill -0 "$KAM_PID" 2>/dev/null; then
    kill -TERM "$KAM_PID" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$KAM_PID" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$KAM_PID" 2>/dev/null || true
  fi
  cleanup
}
trap cleanup_trunks EXIT
[ -n "${KEEP_WORK:-}" ] && trap "cp -r \"\$WORK\" \"\$KEEP_WORK\"; cleanup_trunks" EXIT

command -v kamailio >/dev/null 2>&1 || fail "kamailio is not installed (apt-get install kamailio)"

# free_udp_port, show_msgs and sipp_fail are common.bash's.

# uas NAME SCENARIO IP PORT [options...]: a SIPp UAS in the background
# (pid in LAST_PID) for one call.
uas() {
  local name=$1 scenario=$2 ip=$3 port=$4
  shift 4
  sipp -sf "$scenario" -t u1 -i "$ip" -p "$port" -m 1 -timeout 30s -timeout_error -nostdin \
    -trace_msg -message_file "$WORK/$name.msg" -trace_err -error_file "$WORK/$name.err" "$@" \
    >"$WORK/$name.out" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
  for _ in $(seq 1 100); do
    ss -Hlun "sport = :$port" 2>/dev/null | grep -q . && return 0
    sleep 0.05
  done
  fail "SIPp $name did not bind $ip:$port"
}

# wait_pid PID NAME: must exit 0 within 30 s.
wait_pid() {
  local pid=$1 name=$2 rc=0
  for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -0 "$pid" 2>/dev/null && { kill -9 "$pid"; sipp_fail "$name (still running after 30 s)"; }
  wait "$pid" || rc=$?
  [ "$rc" -eq 0 ] || sipp_fail "$name"
}

# --- Kamailio, the provider's registrar --------------------------------------
KAM_PORT=$(free_udp_port)
KAM_MODULES=""
for d in /usr/lib/x86_64-linux-gnu/kamailio/modules /usr/lib/*/kamailio/modules /usr/lib/kamailio/modules /usr/local/lib64/kamailio/modules; do
  [ -f "$d/registrar.so" ] && { KAM_MODULES=$d; break; }
done
[ -n "$KAM_MODULES" ] || fail "Kamailio's modules (registrar.so) not found"
cat > "$WORK/kamailio.cfg" <<CFG
#!KAMAILIO
debug=2
log_stderror=yes
children=1
disable_tcp=yes
auto_aliases=no
listen=udp:127.0.0.3:$KAM_PORT
mpath="$KAM_MODULES/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"

request_route {
  if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
  if (is_method("REGISTER")) {
    if (!pv_www_authenticate("\$td", "pw-provider-x", "0")) {
      www_challenge("\$td", "0");
      exit;
    }
    if (\$au != "office") { sl_send_reply("403", "Forbidden"); exit; }
    if (!save("location")) { sl_reply_error(); exit; }
    xlog("L_NOTICE", "INTEROP REGISTER user=\$au contact=\$ct expires=\$hdr(Expires)\n");
    exit;
  }
  if (is_method("OPTIONS")) { sl_send_reply("200", "OK"); exit; }
  sl_send_reply("404", "Not Here");
}
CFG
kamailio -c -f "$WORK/kamailio.cfg" >"$WORK/kamailio-check.log" 2>&1 \
  || { tail -n 20 "$WORK/kamailio-check.log" >&2; fail "kamailio -c refused the config"; }
kamailio -f "$WORK/kamailio.cfg" -DD -E -m 32 -M 8 -w "$WORK" >"$WORK/kamailio.log" 2>&1 &
KAM_PID=$!
for _ in $(seq 1 100); do
  ss -Hlun "sport = :$KAM_PORT" 2>/dev/null | grep -q . && break
  kill -0 "$KAM_PID" 2>/dev/null || { tail -n 20 "$WORK/kamailio.log" >&2; fail "kamailio exited"; }
  sleep 0.05
done
ss -Hlun "sport = :$KAM_PORT" 2>/dev/null | grep -q . || fail "kamailio did not bind 127.0.0.3:$KAM_PORT"

# --- The office -----------------------------------------------------------------
CARRIER_PORT=$(free_udp_port)
config="
[registrar]
qualify_interval = \"0s\"

[[extension]]
id = \"1001\"
password = \"pw-1001-x\"
did = \"+15550001001\"
outbound = true

[[trunk]]
name = \"carrier\"
host = \"127.0.0.1\"
port = $CARRIER_PORT
username = \"office\"
password = \"pw-carrier-x\"
match = [\"127.0.0.2\"]
context = \"default\"

[[trunk]]
name = \"provider\"
host = \"127.0.0.3\"
port = $KAM_PORT
username = \"office\"
password = \"pw-provider-x\"
register = true
expires = 120
"
start_server "" "$config"

# Kamailio: registered, with digest.
for _ in $(seq 1 200); do
  admin_get /api/v1/trunks | grep -q '"name":"provider"[^}]*"state":"registered"' && break
  sleep 0.05
done
admin_get /api/v1/trunks | grep -q '"name":"provider"[^}]*"state":"registered"' \
  || { admin_get /api/v1/trunks >&2; tail -n 20 "$WORK/kamailio.log" >&2; fail "trunk provider did not register with Kamailio"; }
grep -q "INTEROP REGISTER user=office contact=<sip:" "$WORK/kamailio.log" \
  || { tail -n 20 "$WORK/kamailio.log" >&2; fail "Kamailio did not save the binding"; }
echo "trunk provider registered with Kamailio (digest, saved in its location table)"

# Outbound through SIPp, which challenges with 407.
uas carrier-407 "$SCEN/trunk-carrier-407.xml" 127.0.0.1 "$CARRIER_PORT"
carrier=$LAST_PID
sipp "127.0.0.1:$SB_UDP_PORT" -sf "$SCEN/call-uac.xml" -t u1 -i 127.0.0.1 -p "$(free_udp_port)" \
  -s 95557654321 -key caller 1001 -au 1001 -ap pw-1001-x -m 1 -d 300 -timeout 30s -timeout_error -nostdin \
  -trace_msg -message_file "$WORK/outbound.msg" -trace_err -error_file "$WORK/outbound.err" \
  >"$WORK/outbound.out" 2>&1 || sipp_fail outbound
wait_pid "$carrier" carrier-407
grep -q "INVITE sip:+15557654321@127.0.0.1:$CARRIER_PORT" "$WORK/carrier-407.msg" \
  || { show_msgs "$WORK/carrier-407.msg"; fail "the carrier did not get +15557654321"; }
grep -q "^P-Asserted-Identity: <sip:+15550001001@127.0.0.1>" "$WORK/carrier-407.msg" \
  || fail "no P-Asserted-Identity with 1001's DID at the carrier"
# The digest the office answered the 407 with (RFC 2617 §3.2.2, MD5
# without qop, as challenged): response = MD5(HA1:nonce:HA2).
auth=$(sed -n 's/^Proxy-Authorization: Digest //p' "$WORK/carrier-407.msg" | tr -d '\r' | head -n1)
[ -n "$auth" ] || fail "no Proxy-Authorization at the carrier"
param() { printf '%s' "$auth" | sed -n "s/.*\\b$1=\"\\([^\"]*\\)\".*/\\1/p"; }
md5() { printf '%s' "$1" | md5sum | cut -d' ' -f1; }
[ "$(param realm)" = carrier.interop ] || fail "digest realm: $auth"
ha1=$(md5 "office:carrier.interop:pw-carrier-x")
ha2=$(md5 "INVITE:$(param uri)")
want=$(md5 "$ha1:$(param nonce):$ha2")
[ "$(param response)" = "$want" ] || fail "the office's digest response is wrong: $auth (want $want)"
echo "outbound call through SIPp: 407 answered with a valid digest, answered, hung up"

# Inbound from the carrier's address to 1001's DID.
p1001=$(free_udp_port)
sipp "127.0.0.1:$SB_UDP_PORT" -sf "$SCEN/register.xml" -t u1 -i 127.0.0.1 -p "$p1001" \
  -s 1001 -au 1001 -ap pw-1001-x -m 1 -timeout 10s -timeout_error -nostdin \
  -trace_msg -message_file "$WORK/register-1001.msg" >/dev/null 2>&1 || sipp_fail register-1001
uas phone-1001 "$SCEN/call-uas.xml" 127.0.0.1 "$p1001" -s 1001
phone=$LAST_PID
sipp "127.0.0.1:$SB_UDP_PORT" -sf "$SCEN/trunk-inbound-uac.xml" -t u1 -i 127.0.0.2 -p "$(free_udp_port)" \
  -s +15550001001 -m 1 -d 300 -timeout 30s -timeout_error -nostdin \
  -trace_msg -message_file "$WORK/inbound.msg" -trace_err -error_file "$WORK/inbound.err" \
  >"$WORK/inbound.out" 2>&1 || sipp_fail inbound
wait_pid "$phone" phone-1001
echo "inbound call from the carrier's address to +15550001001: 1001 answered, hung up"

grep -q "panicked" "$WORK/sb.log" && fail "a panic was logged"
stop_server
for _ in $(seq 1 100); do
  grep -q "INTEROP REGISTER user=office contact=.*expires=0" "$WORK/kamailio.log" && break
  sleep 0.05
done
grep -q "INTEROP REGISTER user=office contact=.*expires=0" "$WORK/kamailio.log" \
  || { tail -n 20 "$WORK/kamailio.log" >&2; fail "the shutdown did not unregister from Kamailio"; }
echo "ok: trunks with SIPp (407 carrier, inbound DID) and Kamailio (registration, unregistration)"
