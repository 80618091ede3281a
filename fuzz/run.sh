#!/usr/bin/env bash
# Runs every fuzz target for a while and prints executions and crashes per target.
#
#   fuzz/run.sh            # 60 s per target
#   fuzz/run.sh 300        # 5 minutes per target
#   FUZZ_TARGETS="jwt_exp token_response" fuzz/run.sh 10
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). libFuzzer wants nightly
# compiler flags; with only a stable toolchain, RUSTC_BOOTSTRAP=1 lets stable rustc
# accept them (set here). The sanitizer defaults to none: the library forbids
# unsafe code, and without ASan a target runs several times faster. Set
# FUZZ_SANITIZER=address to turn it back on.
#
# The committed seeds in fuzz/corpus/<target> are read, never written: what a run
# discovers goes to fuzz/work/<target> (ignored by git). A crash is saved under
# fuzz/artifacts/<target>/; turn it into a regression test in tests/tests/bad_input.rs
# (or the crate's unit tests) together with the fix.
set -euo pipefail

seconds="${1:-${FUZZ_SECONDS:-60}}"
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
export RUSTC_BOOTSTRAP=1
sanitizer="${FUZZ_SANITIZER:-none}"
targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"

for target in $targets; do
    cargo fuzz build --release --sanitizer "$sanitizer" "$target"
done

status=0
summary=""
for target in $targets; do
    mkdir -p "work/$target" "artifacts/$target"
    log="work/$target.log"
    before=$(find "artifacts/$target" -type f | wc -l)
    touch "work/$target.start"
    set +e
    cargo fuzz run --release --sanitizer "$sanitizer" "$target" "work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        >"$log" 2>&1
    code=$?
    set -e
    after=$(find "artifacts/$target" -type f | wc -l)
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    crashes=$((after - before))
    if [ "$code" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes="? (exit $code, see fuzz/$log)"; fi
    [ "$code" -ne 0 ] && status=1
    line=$(printf '%-18s %12s executions  crashes: %s' "$target" "${execs:-?}" "$crashes")
    echo "$line"
    summary+="$line"$'\n'
    if [ "$code" -ne 0 ]; then
        find "artifacts/$target" -type f -newer "work/$target.start" | sed 's/^/    fuzz\//'
    fi
done
echo
echo "fuzzed ${seconds}s per target:"
printf '%s' "$summary"
exit "$status"
