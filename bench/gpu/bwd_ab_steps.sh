# bwd_ab_steps.sh: the steps bwd_ab.sh and bwd_wgmma_ab.sh share, sourced by them after they set
# $out, $bench, the bench arguments shape=(...) and a function form_env FORM that prints a form's
# environment (VAR=value words, empty for the default). Each step logs into $out as those scripts
# document; ab_rows.py reads the results back for their tables.
#   bwd_ab_tests FORM FILTER   the GPU tests FILTER under FORM's environment, into tests.log
#   bwd_ab_rounds FORM...      flashcl-bench "${shape[@]}" under each form in the order given, into
#                              ab.txt under "== FORM round R" headers: round 2 from the second half
#                              of the list on (the lists are ABBA: default .. new, new .. default)
#   bwd_fa2_reference          PyTorch's FlashAttention-2 on the same shapes (sdpa_train.py, flash
#                              backend only) into sdpa_train.json, its log in sdpa.log

bwd_ab_tests() {
  echo "== tests on the GPU, $1: $(form_env "$1") $2" | tee -a "$out/tests.log"
  env $(form_env "$1") timeout 90 ./build-gpu/tests/flashcl_tests --gtest_filter="$2" >> "$out/tests.log" 2>&1
  echo "exit $?: $(grep -E '^\[  (PASSED|FAILED)  \]|SKIPPED|tests? .*skipped' "$out/tests.log" | tail -2 | tr '\n' ' ') (${SECONDS}s)"
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
