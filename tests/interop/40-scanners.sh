#!/usr/bin/env bash
# The scanners that hit every public SIP port. svwar (extension
# enumeration) must learn nothing: what it reports for 1000-1010 against a
# server with 1001 and 1002 configured is exactly what it reports against
# one with none of them. svcrack (password guessing) must get its source
# banned before it reaches the right password.
source "$(dirname "$0")/common.bash"
command -v svwar >/dev/null || fail "svwar not installed (Debian package sipvicious)"

SECURITY='
[security]
ban_after_failures = 10
ban_window = "60s"
ban_time = "10m"
'
WITH_1001_1002="$SECURITY"'
[[extension]]
id = "1001"
password = "correct-horse-1001"

[[extension]]
id = "1002"
password = "battery-staple-1002"
'
WITHOUT="$SECURITY"'
[[extension]]
id = "2001"
password = "unrelated-2001"
'

# The extensions of 1000-1010 svwar reports (its table has one "| ext |"
# row each), for one method.
found_by() {
  svwar -e1000-1010 -m "$1" --force --maximumtime=10 -t 0.05 -p "$SB_UDP_PORT" 127.0.0.1 \
    </dev/null 2>&1 | tee -a "$WORK/svwar.log" | { grep -oE '^\| *10(0[0-9]|10) *\|' || true; } \
    | tr -dc '0-9\n' | sort -u | tr '\n' ' '
}

declare -A seen
for setup in WITH_1001_1002 WITHOUT; do
  start_server "" "${!setup}"
  for method in REGISTER INVITE OPTIONS; do
    seen[$setup.$method]=$(found_by "$method")
  done
  stop_server
done
for method in REGISTER INVITE OPTIONS; do
  a=${seen[WITH_1001_1002.$method]} b=${seen[WITHOUT.$method]}
  if [ "$a" != "$b" ]; then
    cat "$WORK/svwar.log" >&2
    fail "svwar -m $method tells the configurations apart: [$a] with 1001/1002 vs [$b] without"
  fi
  echo "svwar -m $method: reports [${a}] whether or not 1001/1002 exist"
done

# svcrack: 30 wrong guesses, then the right password.
start_server "" "$WITH_1001_1002"
for i in $(seq 1 30); do echo "guess-$i"; done > "$WORK/dict.txt"
echo "correct-horse-1001" >> "$WORK/dict.txt"
svcrack -u 1001 -d "$WORK/dict.txt" --domain=interop.test --maximumtime=8 -p "$SB_UDP_PORT" 127.0.0.1 \
  </dev/null >"$WORK/svcrack.log" 2>&1 || true
if grep -q "correct-horse-1001" "$WORK/svcrack.log"; then
  cat "$WORK/svcrack.log" >&2
  fail "svcrack found the password"
fi
grep -q "banned 127.0.0.1" "$WORK/sb.log" || { cat "$WORK/svcrack.log" >&2; fail "svcrack's source was not banned"; }
[ "$(grep -c 'banned 127.0.0.1' "$WORK/sb.log")" -eq 1 ] || fail "the ban was logged more than once"
stop_server
echo "ok: svwar learned nothing; svcrack was banned after 10 failures without finding the password"
