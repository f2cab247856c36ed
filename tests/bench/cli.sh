#!/bin/sh
# tests/bench/cli.sh BENCH: flashcl-bench's command line as a user meets it. The main --help names
# the other modes; --mode decode and --mode bwd start them (as --decode and --backward do);
# a mode in another case or an unknown one is refused with a message naming --mode; --causal and
# a usage error's exit status (2) are alike in every mode; a small
# decode with --check runs on the default device and prints its error column.
set -u
bench=$1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# expect_run NAME WANT_EXIT PATTERN ARGS...: runs the bench, checks its exit status (exactly: 0, or
# 2 for a usage error) and that its stdout+stderr hold PATTERN (a grep -E pattern).
expect_run() {
  name=$1 want=$2 pattern=$3
  shift 3
  out=$("$bench" "$@" 2>&1)
  status=$?
  [ "$status" -eq "$want" ] || fail "$name: exit $status, wanted $want"
  printf '%s\n' "$out" | grep -q -E -- "$pattern" || fail "$name: output lacks /$pattern/: $out"
}

expect_run "main help names the modes" 0 "--decode \(or --mode decode" --help
expect_run "main help names the FP8 mode" 0 "--dtype e4m3\|e5m2" --help
expect_run "--mode decode starts the decode mode" 0 "^flashcl-bench --decode:" --mode decode --help
expect_run "--mode=decode starts the decode mode" 0 "^flashcl-bench --decode:" --mode=decode --help
expect_run "--mode bwd starts the backward mode" 0 "^flashcl-bench --backward:" --mode bwd --help
expect_run "--dtype e4m3 starts the FP8 mode" 0 "^flashcl-bench --dtype e4m3: the fp8 forward" --dtype e4m3 --help
# the backward's memory column: standard's P and dS (2 x 4 B x 64 x 64 = 0.033 MB and more), fa2's O(N)
expect_run "the backward's memory column" 0 "work MB" --backward -b 1 --heads 1 -n 64 --head-dim 16 --algo fa2 -r 1 -w 1
expect_run "standard's N^2 workspace" 0 "standard \\| .* \\| .* \\|     0\\.0[3-9]" --backward -b 1 --heads 1 -n 64 \
  --head-dim 16 --algo standard -r 1 -w 1
expect_run "a mode in another case" 2 "--mode: 'Decode': the decode has its own mode" --mode Decode
expect_run "an unknown mode" 2 "--mode: unknown mode 'fwdx'" --mode fwdx
# --causal is spelled alike in every mode: on, off or both (yes/no alike), bare means on; the
# decode times one setting and refuses "both" by name. Help is enough to see the parse succeed.
for mode in "" --backward "--dtype e4m3" --decode; do
  # shellcheck disable=SC2086  # the mode's words split on purpose
  expect_run "[$mode] --causal on" 0 "Causal mask" $mode --causal on --help
  # shellcheck disable=SC2086
  expect_run "[$mode] --causal yes" 0 "Causal mask" $mode --causal yes --help
  # shellcheck disable=SC2086
  expect_run "[$mode] bare --causal" 0 "Causal mask" $mode --causal --help
  # shellcheck disable=SC2086
  expect_run "[$mode] --causal maybe" 2 "--causal: expected on, off" $mode --causal maybe
  # shellcheck disable=SC2086
  "$bench" $mode --no-such-option > /dev/null 2>&1
  status=$?
  [ "$status" -eq 2 ] || fail "[$mode] an unknown option: exit $status, wanted 2 (a usage error)"
done
# --softcap and --window are checked alike in the forward and the backward (no 300-digit range).
for mode in "" --backward; do
  # shellcheck disable=SC2086
  expect_run "[$mode] a negative softcap" 2 "^--softcap: expected a finite number >= 0 \(0: off\) within float's range, got '-1'$" $mode --softcap -1
  # shellcheck disable=SC2086
  expect_run "[$mode] a one-sided window" 2 "^--window: expected LEFT,RIGHT" $mode --window 5
done
# A softcap past float's range would reach the library as inf: refused at the command line.
expect_run "a softcap past float" 2 "^--softcap: .*within float's range, got '1e308'" --softcap 1e308
# The backward takes 16- and 32-bit storage and says why FP8 is not one; lists are checked as the
# forward checks them; FP8 names in any case start the FP8 mode.
expect_run "the backward refuses e4m3" 2 "--dtype: 'e4m3': FP8 has no backward" --backward --dtype e4m3
expect_run "the backward's head dims" 2 "--head-dim: 512 is out of range 1..256" --backward --head-dim 512
expect_run "the FP8 mode's head dims" 2 "--head-dim: 300 is out of range 1..256" --dtype e4m3 --head-dim 300
expect_run "the backward's dtype spellings" 0 "Causal mask" --backward --dtype fp16,bfloat16 --algo all --help
expect_run "--dtype E4M3 starts the FP8 mode" 0 "^flashcl-bench --dtype e4m3: the fp8 forward" --dtype E4M3 --help
expect_run "the decode's --cache-dtype is fp8 only" 2 "--cache-dtype: f32 not in \\{e4m3,e5m2\\}" --decode --cache-dtype f32
# Every mode takes at least one untimed run: a first call's events can hold PoCL's kernel build.
for mode in "" --backward "--dtype e4m3" --decode; do
  # shellcheck disable=SC2086
  expect_run "[$mode] -w 0" 2 "--warmup: Value 0 not in range 1" $mode -w 0
done
# A row that fails makes the run fail (exit 1) in every mode that has rows of its own.
# (a faked CL_INVALID_COMMAND_QUEUE at the first enqueue: an error, where OUT_OF_RESOURCES would skip)
fault="clEnqueueNDRangeKernel:1:-36"
out=$(FLASHCL_FAULT_INJECT=$fault "$bench" -n 64 --head-dim 16 --heads 2 -r 1 --algo fa2 --no-roofline -q 2>&1)
[ $? -eq 1 ] && printf '%s\n' "$out" | grep -q "^flashcl-bench: 1 of 1 rows failed" || fail "a failing forward row: $out"
out=$(FLASHCL_FAULT_INJECT=$fault "$bench" --backward -n 64 --head-dim 16 --heads 2 -r 1 2>&1)
[ $? -eq 1 ] && printf '%s\n' "$out" | grep -q "^flashcl-bench --backward: 1 of 1 rows failed" ||
  fail "a failing backward row: $out"
# A varlen sweep's rows of other dtypes time the same lengths (the same FLOPs), and the header
# names the variants that ran.
out=$("$bench" -n 64 --head-dim 16 --heads 2 -b 3 -r 1 -q --no-roofline --no-check --varlen --dtype f32,f16 \
  --algo fa2 -f csv 2>&1)
flops=$(printf '%s\n' "$out" | awk -F, 'NR == 1 { for (i = 1; i <= NF; ++i) if ($i == "flops") c = i; next }
  { print $c }' | sort -u | wc -l)
[ "$flops" = 1 ] || fail "varlen rows of two dtypes time different lengths: $out"
expect_run "the header names the variants" 0 "^variants : ALiBi, bias mask, varlen" -n 64 --head-dim 16 --heads 2 \
  -r 1 --algo fa2 --no-roofline --alibi --mask bias --varlen
# A bare --causal means on in a real run, not only in the parse: the forward's CSV and the
# backward's table say so.
expect_run "a bare --causal runs causal (forward)" 0 '^"fa2","fa2","ok",.*,true,"f32"' -n 64 --head-dim 16 \
  --heads 2 -r 1 --algo fa2 --no-roofline --no-check -q -f csv --causal
expect_run "a bare --causal runs causal (backward)" 0 "^ +64 +16 +yes +f32 fa2 " --backward -n 64 --head-dim 16 \
  --heads 2 -r 1 --causal
expect_run "the decode refuses --causal both" 2 "--causal: this mode times one setting a run: on or off" \
  --decode --causal both

expect_run "a small decode, checked" 0 ",64,1,2,1,16,f16,1,0,contiguous,0,[0-9]+,.*,[0-9.e+-]+$" \
  --mode decode --cache 64 -b 1 --heads 2 --heads-kv 1 --head-dim 16 -r 1 -w 1 --check --no-roofline --csv
# Its max_err column (the last) against float64: fp16 storage, 64 keys, well under 1e-3.
err=$(printf '%s\n' "$out" | tail -n 1 | awk -F, '{print $NF}')
awk -v e="$err" 'BEGIN { exit !(e + 0 == e && e >= 0 && e < 1e-3) }' || fail "the decode's max_err is '$err', wanted < 1e-3"

[ "$fails" -eq 0 ] && echo "bench cli: all checks passed"
exit "$fails"
