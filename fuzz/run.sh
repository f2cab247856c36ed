#!/bin/sh
# Runs one libFuzzer target of build-fuzz/ for CI and docs/CHECKS.md:
#   fuzz/run.sh BUILD_DIR TARGET CORPUS_DIR [libFuzzer flags...]
# LeakSanitizer checks once, when the fuzzer exits, not after each input (-detect_leaks=0): the
# per-input check stops the world while PoCL's worker threads run, and its tracer thread can crash
# there ("Tracer caught signal 11", a LeakSanitizer fault, not flashcl's; CI met it once after
# 105k inputs). A leak still fails the run at exit (LSAN_OPTIONS holds the suppressions of
# tests/lsan.supp, and use_tls=0 as the tests have). If the tracer crashes at that exit check and
# nothing else went wrong, the corpus is replayed (the same flags, then -runs=0: every unit once)
# for the leak check alone, at most twice; any sanitizer report, crash, timeout or leak fails at once.
set -u
build=$1 target=$2 corpus=$3
shift 3
mkdir -p "$build/$corpus"
log="$build/$target.log"

# The fuzzing finished ("Done N runs"), then only LeakSanitizer's tracer failed: no report of a
# sanitizer, a leak, a deadly signal, a timeout or an out-of-memory. (libFuzzer's death callback
# still writes an empty crash-* unit for the tracer's fault; that is not a finding.)
only_tracer_crashed() {
  grep -q -E "^Done [0-9]+ runs" "$log" &&
    grep -q "Tracer caught signal" "$log" &&
    grep -q "LeakSanitizer has encountered a fatal error" "$log" &&
    ! grep -q -E "ERROR: (AddressSanitizer|LeakSanitizer: detected|libFuzzer)|runtime error:" "$log"
}

(cd "$build" && "./fuzz/$target" -detect_leaks=0 "$@" "$corpus") > "$log" 2>&1
status=$?
cat "$log"
replays=0
while [ "$status" -ne 0 ] && [ "$replays" -lt 2 ] && only_tracer_crashed; do
  replays=$((replays + 1))
  echo "== $target: LeakSanitizer's tracer crashed at the exit check; replaying the corpus for it ($replays of 2)"
  (cd "$build" && "./fuzz/$target" -detect_leaks=0 "$@" -runs=0 "$corpus") > "$log" 2>&1
  status=$?
  tail -n 20 "$log"
done
[ "$status" -eq 0 ] || echo "== $target failed (exit $status)"
exit "$status"
