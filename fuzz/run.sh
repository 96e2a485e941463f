#!/usr/bin/env bash
# fuzz/run.sh SECONDS [HARNESS...] - replay the regression inputs, then run
# each harness for SECONDS, as many at once as there are CPUs, and print one
# summary line per harness (executions, libFuzzer's cov: and ft:, corpus size).
#
# C harnesses are build/fuzz/<name> (built by `make fuzz`); fuzz_python runs
# under $FUZZ_PYTHON (default .venv/bin/python) with atheris. Each harness
# reads the committed seeds in fuzz/corpus/<name>/ and keeps what it finds in
# build/fuzz/corpus/<name>/ (never in the committed corpus). A crash or a
# broken invariant leaves build/fuzz/artifacts/<name>-crash-* and makes the
# script exit 1; turn such an input into fuzz/regressions/<name>/<bug-name>.
set -u
cd "$(dirname "$0")/.."

secs=${1:-60}
shift || true
harnesses=${*:-"fuzz_frame_parser fuzz_utf8 fuzz_handshake fuzz_clienths fuzz_wsconn fuzz_pmdeflate fuzz_topics fuzz_envelope fuzz_redisseq fuzz_tls fuzz_busproto fuzz_python"}
py=${FUZZ_PYTHON:-.venv/bin/python}
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
out=build/fuzz
mkdir -p "$out/logs" "$out/artifacts"

cmd_for() { # harness -> command prefix
  if [ "$1" = fuzz_python ]; then echo "$py fuzz/fuzz_python.py"; else echo "$out/$1"; fi
}

max_len_for() {
  case "$1" in
    fuzz_utf8) echo 4096 ;;
    fuzz_python) echo 4096 ;;
    *) echo 8192 ;;
  esac
}

status=0

# 1. Regressions: every saved input must now pass.
for h in $harnesses; do
  dir=fuzz/regressions/$h
  [ -d "$dir" ] || continue
  files=$(find "$dir" -type f ! -name '*.md' | sort)
  [ -n "$files" ] || continue
  # shellcheck disable=SC2086
  if $(cmd_for "$h") -runs=1 $files >"$out/logs/$h.regressions.log" 2>&1; then
    echo "$h: $(echo "$files" | wc -l) regression input(s) pass"
  else
    echo "$h: REGRESSION FAILED (see $out/logs/$h.regressions.log)"
    grep -A2 -E "INVARIANT FAILED|ERROR: AddressSanitizer|runtime error|Uncaught Python" \
      "$out/logs/$h.regressions.log" | head -8
    status=1
  fi
done

# 2. Fuzzing, up to $jobs harnesses at a time.
run_one() {
  local h=$1 work=$out/corpus/$1
  mkdir -p "$work"
  # shellcheck disable=SC2046
  $(cmd_for "$h") -max_total_time="$secs" -max_len="$(max_len_for "$h")" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$out/artifacts/$h-" \
    "$work" "fuzz/corpus/$h" >"$out/logs/$h.log" 2>&1
}

pids=()
names=()
for h in $harnesses; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
  run_one "$h" &
  pids+=($!)
  names+=("$h")
done

printf '%-18s %12s %8s %8s %8s  %s\n' harness execs cov ft corpus result
for i in "${!pids[@]}"; do
  h=${names[$i]}
  if wait "${pids[$i]}"; then res=ok; else res=FAILED; status=1; fi
  log=$out/logs/$h.log
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1)
  cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
  ft=$(echo "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
  corp=$(echo "$last" | sed -n 's/.*corp: \([0-9]*\).*/\1/p')
  printf '%-18s %12s %8s %8s %8s  %s\n' "$h" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$res"
  if [ "$res" != ok ]; then
    grep -A2 -E "INVARIANT FAILED|ERROR: AddressSanitizer|ERROR: libFuzzer|runtime error|Uncaught Python" \
      "$log" | head -8 | sed 's/^/    /'
    ls "$out/artifacts/$h-"* 2>/dev/null | sed 's/^/    artifact: /'
  fi
done
exit $status
