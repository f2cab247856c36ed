# bwd_ab_steps.sh: the settings and steps bwd_ab.sh and bwd_wgmma_ab.sh share, sourced by them after
# setup.sh. It exports FLASHCL_BWD_MMA=1 (the tensor-core backward for every call; a failed probe
# is an error) and sets $bench and the timed shapes, shape=(...): B 8, H 16, N 4096, d 64/128,
# causal both, fp16/bf16, fa2, device-event medians of -r 10 after -w 2. The steps use the caller's
# $out and form_env FORM, a function that prints a form's environment (VAR=value words, empty for
# the default); each logs into $out as those scripts document, and ab_rows.py reads the results
# back for their tables.
#   bwd_ab_tests FORM FILTER   the GPU tests FILTER under FORM's environment, into tests.log
#   bwd_ab_rounds FORM...      flashcl-bench "${shape[@]}" under each form in the order given, into
#                              ab.txt under "== FORM round R" headers: round 2 from the second half
#                              of the list on (the lists are ABBA: default .. new, new .. default)
#   bwd_fa2_reference          PyTorch's FlashAttention-2 on the same shapes (sdpa_train.py, flash
#                              backend only) into sdpa_train.json, its log in sdpa.log

export FLASHCL_BWD_MMA=1
bench=./build-gpu/bench/flashcl-bench
shape=(--backward -b 8 --heads 16 -n 4096 --head-dim 64,128 --causal both --dtype f16,bf16 --algo fa2 -r 10 -w 2)

bwd_ab_tests() {
  echo "== tests on the GPU, $1: $(form_env "$1") $2" | tee -a "$out/tests.log"
  env $(form_env "$1") timeout 90 ./build-gpu/tests/flashcl_tests --gtest_filter="$2" >> "$out/tests.log" 2>&1
  echo "exit $?: $(grep -E '^\[  (PASSED|FAILED)  \]|SKIPPED|tests? .*skipped' "$out/tests.log" | tail -2 |
    tr '\n' ' ') (${SECONDS}s)"
}

bwd_ab_rounds() {
  local i=0 form round
  : > "$out/ab.txt"
  for form in "$@"; do
    round=$((i < $# / 2 ? 1 : 2))
    echo "== $form round $round" >> "$out/ab.txt"
    env $(form_env "$form") timeout 60 $bench "${shape[@]}" >> "$out/ab.txt" 2>&1
    echo "$form done (${SECONDS}s)"
    i=$((i + 1))
  done
  grep -iE "error|fail" "$out/ab.txt" | head -5
}

bwd_fa2_reference() {
  timeout 60 python3 bench/gpu/sdpa_train.py --tokens 32768 --heads 16 --seqlen 4096 --head-dim 64,128 \
    --dtype f16,bf16 --backends flash --json "$out/sdpa_train.json" > "$out/sdpa.log" 2>&1 || tail -5 "$out/sdpa.log"
  echo "(${SECONDS}s)"
}
