#!/bin/sh
# run_oclgrind.sh TEST_BINARY GTEST_FILTER OCLGRIND_ARGS...: runs each GoogleTest case matching the
# filter in its own oclgrind process, printing everything, and fails when a case fails, oclgrind
# dies, or no case matched. One process per case because oclgrind 21.10's --uninitialized shadow
# memory goes stale when a freed buffer's slot is reused by a larger buffer (a later test then gets
# false "uninitialized" reports); within one forward call that never happens. ctest adds the
# FAIL_REGULAR_EXPRESSION on oclgrind's messages (it exits 0 even when it reports errors).
set -u
binary=$1
filter=$2
shift 2
cases=$("$binary" --gtest_list_tests --gtest_filter="$filter" | awk '/^[^ ]/ {suite=$1} /^  / {print suite $1}')
if [ -z "$cases" ]; then
  echo "run_oclgrind.sh: no test matches '$filter'"
  exit 1
fi
ran=0
failed=0
for case in $cases; do
  ran=$((ran + 1))
  if ! oclgrind "$@" "$binary" --gtest_filter="$case" --gtest_brief=1; then
    echo "run_oclgrind.sh: $case exited non-zero under oclgrind"
    failed=$((failed + 1))
  fi
done
echo "run_oclgrind.sh: $ran cases run, $failed exited non-zero"
[ "$failed" -eq 0 ]
