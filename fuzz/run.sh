#!/usr/bin/env bash
# Build the parsers' fuzz targets on the STABLE toolchain and run each for a
# bounded time with libFuzzer (the libfuzzer-sys crate), seeded from
# fuzz/corpus/<target>/ and the RFC corpora in tests/corpora/.
#
# No nightly and no cargo-fuzz: the coverage instrumentation libFuzzer needs
# comes from stable codegen options (-Cpasses=sancov-module and LLVM's
# -sanitizer-coverage-* options) plus `--cfg fuzzing`, the same flags
# cargo-fuzz passes, minus its nightly-only -Zsanitizer=address, which buys
# little in a crate without `unsafe`. Panics, failed assertions, integer
# overflow (-Coverflow-checks), debug assertions, timeouts and OOM are caught.
#
# Usage: fuzz/run.sh [TARGET...]          (default: every target)
# Environment:
#   FUZZ_SECONDS   seconds of fuzzing per target (default 45; 0 only replays
#                  the seeds once, a quick regression check)
#   FUZZ_TIMEOUT   seconds one input may take before it counts as a hang (10)
#   FUZZ_RSS_MB    memory limit in MB before it counts as an OOM (2048)
#   FUZZ_TARGET_DIR  cargo target dir for the fuzz crate
#                  (default: $CARGO_TARGET_DIR/fuzz, else fuzz/target)
#   FUZZ_WORK      where the growing working corpora go (default:
#                  $FUZZ_TARGET_DIR/corpus; never the committed seeds)
#
# A crash, hang or OOM makes the script exit 1 after the remaining targets
# have run; the input is saved under fuzz/artifacts/<target>/ and printed.
# Turn it into a seed (fuzz/corpus/<target>/) and a regression unit test in
# the parser's crate, then fix the parser.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
fuzz_dir=$(pwd)
root=$(cd .. && pwd)

all_targets=(sip_message digest sdp rtp rtcp stir_identity)
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
  case " ${all_targets[*]} " in *" $t "*) ;; *) echo "unknown fuzz target '$t' (have: ${all_targets[*]})" >&2; exit 2 ;; esac
done

seconds=${FUZZ_SECONDS:-45}
per_input_timeout=${FUZZ_TIMEOUT:-10}
rss_mb=${FUZZ_RSS_MB:-2048}
case "$seconds" in '' | *[!0-9]*) echo "FUZZ_SECONDS must be a whole number of seconds, not '$seconds'" >&2; exit 2 ;; esac

if [ -n "${FUZZ_TARGET_DIR:-}" ]; then
  target_dir=$FUZZ_TARGET_DIR
elif [ -n "${CARGO_TARGET_DIR:-}" ]; then
  case "$CARGO_TARGET_DIR" in
    /*) target_dir=$CARGO_TARGET_DIR/fuzz ;;
    *) target_dir=$root/$CARGO_TARGET_DIR/fuzz ;;
  esac
else
  target_dir=$fuzz_dir/target
fi
work=${FUZZ_WORK:-$target_dir/corpus}
host=$(rustc -vV | sed -n 's/^host: //p')

# --- Build ------------------------------------------------------------------
# --target keeps these flags off build scripts and proc macros (an
# instrumented build script would not link: libFuzzer is not in it).
flags=(
  -Cpasses=sancov-module
  -Cllvm-args=-sanitizer-coverage-level=4
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
  -Cllvm-args=-sanitizer-coverage-pc-table
  -Cllvm-args=-sanitizer-coverage-trace-compares
  --cfg fuzzing
  -Cdebug-assertions
  -Coverflow-checks
)
echo "fuzz: building ${targets[*]} for $host with $(rustc --version) (target dir $target_dir)"
build_start=$(date +%s)
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
RUSTFLAGS="${flags[*]}" cargo build --release --locked --quiet \
  --manifest-path "$fuzz_dir/Cargo.toml" --target-dir "$target_dir" \
  --target "$host" "${bins[@]}"
echo "fuzz: built in $(($(date +%s) - build_start)) s"

# --- Run --------------------------------------------------------------------
seeds_for() {
  case "$1" in
    sip_message) echo "$root/tests/corpora/rfc4475 $root/tests/corpora/rfc5118" ;;
    sdp) echo "$root/tests/corpora/rfc4317" ;;
    *) echo "" ;;
  esac
}
dict_for() {
  case "$1" in
    sip_message) echo "$fuzz_dir/dict/sip.dict" ;;
    sdp) echo "$fuzz_dir/dict/sdp.dict" ;;
    digest) echo "$fuzz_dir/dict/digest.dict" ;;
    *) echo "" ;;
  esac
}

show_input() {
  echo "---- $1 ($(wc -c <"$1") bytes) ----"
  od -A d -c "$1" | head -n 64
  echo "----"
}

failed=()
run_start=$(date +%s)
for t in "${targets[@]}"; do
  bin=$target_dir/$host/release/$t
  corpus=$work/$t
  artifacts=$fuzz_dir/artifacts/$t
  log=$target_dir/$t.log
  mkdir -p "$corpus" "$artifacts"
  # The working corpus comes first: libFuzzer adds new inputs to the first
  # directory only, so the committed seeds and the RFC corpora stay as they are.
  dirs=("$corpus" "$fuzz_dir/corpus/$t")
  read -r -a extra <<<"$(seeds_for "$t")"
  dirs+=("${extra[@]+"${extra[@]}"}")
  opts=(-timeout="$per_input_timeout" -rss_limit_mb="$rss_mb" -artifact_prefix="$artifacts/"
    -print_final_stats=1)
  dict=$(dict_for "$t")
  [ -z "$dict" ] || opts+=(-dict="$dict")
  if [ "$seconds" -eq 0 ]; then
    opts+=(-runs=0)
  else
    opts+=(-max_total_time="$seconds")
  fi
  before=$(find "$artifacts" -type f | LC_ALL=C sort)
  echo "fuzz: $t for ${seconds} s (log $log)"
  rc=0
  # libFuzzer stops itself at -max_total_time; the outer timeout only guards
  # against the fuzzer itself wedging.
  timeout --kill-after=10 $((seconds + per_input_timeout + 120)) \
    "$bin" "${opts[@]}" "${dirs[@]}" >"$log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  cov=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [^ ]+' || true)
  echo "fuzz: $t: exit $rc, ${runs:-?} inputs, ${speed:-?} exec/s, ${cov:-no coverage line}"
  if [ "$rc" -ne 0 ]; then
    failed+=("$t")
    echo "fuzz: $t FAILED; the end of its log:"
    grep -v -E '^#[0-9]+\s+(NEW|REDUCE|pulse)|^0x[0-9a-f]+,' "$log" | tail -n 40
    new=$(comm -13 <(echo "$before") <(find "$artifacts" -type f | LC_ALL=C sort) | grep -E '/(crash|timeout|oom|leak)-' || true)
    for f in $new; do
      show_input "$f"
      echo "reproduce: $bin $f"
    done
  fi
done
echo "fuzz: ran ${#targets[@]} target(s) in $(($(date +%s) - run_start)) s"

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (inputs under $fuzz_dir/artifacts/)" >&2
  exit 1
fi
echo "fuzz: no crash, hang or OOM"
