#!/usr/bin/env bash
# 1,000 extensions register with digest, each through its own SIPp run
# (SIPp 3.6's per-field [authentication username=[field0]] form is broken,
# while -au/-ap work, so every extension gets a SIPp process of its own, 8
# at a time). Then /api/v1/registrations must list all 1,000, and a wrong
# password must get nothing but 401s.
source "$(dirname "$0")/common.bash"

extensions=""
for id in $(seq 2000 2999); do
  extensions+=$'\n[[extension]]\nid = "'"$id"$'"\npassword = "pw-'"$id"$'-x"\n'
done
start_server "" "$extensions"

register_one() {
  local id=$1
  sipp "127.0.0.1:$SB_UDP_PORT" -sf "$ROOT/tests/interop/scenarios/register.xml" -t u1 \
    -i 127.0.0.1 -p 0 -s "$id" -au "$id" -ap "pw-$id-x" -m 1 -timeout 20s -timeout_error \
    -nostdin >/dev/null 2>&1
}
export -f register_one
export ROOT SB_UDP_PORT

started=$(date +%s%N)
failed=$(seq 2000 2999 | xargs -P 8 -I{} bash -c 'register_one {} || echo {}' | wc -l)
elapsed_ms=$(( ($(date +%s%N) - started) / 1000000 ))
[ "$failed" -eq 0 ] || fail "$failed of 1000 registrations failed"

listed=$(admin_get /api/v1/registrations | grep -o '"aor":' | wc -l)
[ "$listed" -eq 1000 ] || fail "/api/v1/registrations lists $listed bindings, expected 1000"

# A wrong password never gets a 200.
if sipp "127.0.0.1:$SB_UDP_PORT" -sf "$ROOT/tests/interop/scenarios/register.xml" -t u1 \
    -i 127.0.0.1 -p 0 -s 2000 -au 2000 -ap wrong -m 1 -timeout 5s -timeout_error \
    -nostdin >/dev/null 2>&1; then
  fail "a wrong password registered"
fi
stop_server
echo "ok: 1000 extensions registered with digest through SIPp in ${elapsed_ms} ms; all listed"
