#!/usr/bin/env bash
# Runs the unit tests under AddressSanitizer and ThreadSanitizer, each build in its own
# scratch path so the ordinary .build is untouched:
#
#   tools/sanitize.sh                 # address, then thread
#   tools/sanitize.sh thread          # one of them
#   tools/sanitize.sh address --filter VirtioTests   # extra arguments go to swift test
#
# Logs: .build-<sanitizer>/sanitize.log. Exits non-zero when a test fails or a sanitizer
# reports (a report makes the test process fail).
set -euo pipefail
cd "$(dirname "$0")/.."

sanitizers=()
while [ $# -gt 0 ]; do
    case "$1" in
        address|thread) sanitizers+=("$1"); shift ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) break ;;
    esac
done
[ ${#sanitizers[@]} -gt 0 ] || sanitizers=(address thread)

# halt_on_error: the first report fails the run; the report names the test that was running.
export ASAN_OPTIONS="${ASAN_OPTIONS:-halt_on_error=1:detect_stack_use_after_return=1}"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}"

failed=0
for sanitizer in "${sanitizers[@]}"; do
    scratch=".build-$sanitizer"
    mkdir -p "$scratch"
    log="$scratch/sanitize.log"
    echo "== unit tests under the $sanitizer sanitizer (scratch $scratch, log $log)"
    start=$(date +%s)
    # The build runs BPFEmbedder, instrumented too; leaks at its exit are Foundation's, not ours.
    if ASAN_OPTIONS=detect_leaks=0 swift build --build-tests --scratch-path "$scratch" --sanitize="$sanitizer" >"$log" 2>&1 &&
       swift test --skip-build --scratch-path "$scratch" --sanitize="$sanitizer" "$@" >>"$log" 2>&1; then
        result=passed
    else
        result=FAILED
        failed=1
    fi
    summary=$(grep -E "Executed [0-9]+ tests" "$log" | tail -1 | sed 's/^[[:space:]]*//' || true)
    echo "$sanitizer: $result in $(( $(date +%s) - start )) s; ${summary:-no XCTest summary}"
    if [ "$result" = FAILED ]; then
        grep -E "ERROR: (Address|Thread|Leak)Sanitizer|WARNING: ThreadSanitizer|error: |failed \(" "$log" | head -20 || true
    fi
done
exit "$failed"
