#!/usr/bin/env bash
# Builds the libFuzzer targets (Fuzz/) with AddressSanitizer and runs each for a bounded time:
#
#   tools/fuzz.sh                       # every target, 25 s each, one after the other
#   tools/fuzz.sh --seconds 3600 --parallel --out /work/fuzz-runs   # all at once, an hour each
#   tools/fuzz.sh --seconds 60 split-ring vhost-message             # some targets
#   tools/fuzz.sh --list                # the target names
#   tools/fuzz.sh --no-build --binary /work/fuzz-runs/FerryFuzz ...   # a copy, for runs that
#                                       # must not see the next build replace the binary
#
# Each target runs in its own process (FERRY_FUZZ_TARGET picks it in the one binary) with its
# working corpus in OUT/<target>/corpus, the repository's seeds (Fuzz/Corpus/<target>) read
# alongside, and its log and any finding (crash-*, timeout-*, oom-*, leak-*) in OUT/<target>/.
# Exits non-zero when a target found something; keep the input as a seed once it is fixed.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=25
out=.build-fuzz/runs
parallel=0
build=1
binary=
targets=()
all_targets=(vhost-message guest-memory split-ring packed-ring config-file control-request)
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --parallel) parallel=1; shift ;;
        --no-build) build=0; shift ;;
        --binary) binary="$2"; shift 2 ;;
        --list) printf '%s\n' "${all_targets[@]}"; exit 0 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")

if [ "$build" = 1 ]; then
    echo "== fuzz: build (release, AddressSanitizer + libFuzzer's coverage, scratch .build-fuzz)"
    # FERRY_FUZZ=1 adds the FerryFuzz executable to the package (Package.swift): it has no main
    # of its own, libFuzzer's is linked in, so an ordinary build must not see it. The coverage
    # flags are what -sanitize=fuzzer turns on when compiling; it is not given to the whole build
    # because SwiftPM would then link libFuzzer's main into the build tools (BPFEmbedder) too.
    coverage=edge,inline-8bit-counters,pc-table,trace-cmp
    # The build runs BPFEmbedder, instrumented too; leaks at its exit are Foundation's, not ours.
    ASAN_OPTIONS=detect_leaks=0 FERRY_FUZZ=1 swift build --scratch-path .build-fuzz -c release --sanitize=address \
        -Xswiftc -sanitize-coverage=$coverage -Xcc -fsanitize-coverage=$coverage --product FerryFuzz
fi
binary="${binary:-$PWD/.build-fuzz/release/FerryFuzz}"

# Inputs as long as the largest message a target takes, plus its framing.
max_len() {
    case "$1" in
        vhost-message) echo 16384 ;;
        *) echo 4096 ;;
    esac
}

run_one() {
    local target="$1" dir="$out/$1"
    mkdir -p "$dir/corpus"
    # -timeout: an input that takes this long is a hang, and a finding.
    FERRY_FUZZ_TARGET="$target" "$binary" "$dir/corpus" "Fuzz/Corpus/$target" \
        -max_total_time="$seconds" -max_len="$(max_len "$target")" -timeout=20 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$dir/" >"$dir/fuzz.log" 2>&1
}

summary() {
    local target="$1" dir="$out/$1" status="$2"
    local done runs rate cov findings
    done=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$dir/fuzz.log" | tail -1 || true)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/fuzz.log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/fuzz.log" | tail -1)
    cov=$(echo "$done" | sed -n 's/.*cov: \([0-9]*\) ft: \([0-9]*\) corp: \([0-9]*\).*/cov \1, features \2, corpus \3/p')
    findings=$(find "$dir" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | wc -l)
    printf '%-16s exit %s, %s runs, %s exec/s, %s, %s findings (%s)\n' \
        "$target" "$status" "${runs:-?}" "${rate:-?}" "${cov:-no coverage line}" "$findings" "$dir/fuzz.log"
    [ "$status" = 0 ] && [ "$findings" = 0 ]
}

echo "== fuzz: ${targets[*]}, ${seconds} s each$([ "$parallel" = 1 ] && echo ', in parallel'), output in $out"
declare -A status
if [ "$parallel" = 1 ]; then
    declare -A pids
    for t in "${targets[@]}"; do run_one "$t" & pids[$t]=$!; done
    for t in "${targets[@]}"; do if wait "${pids[$t]}"; then status[$t]=0; else status[$t]=$?; fi; done
else
    for t in "${targets[@]}"; do if run_one "$t"; then status[$t]=0; else status[$t]=$?; fi; done
fi

failed=0
for t in "${targets[@]}"; do summary "$t" "${status[$t]}" || failed=1; done
if [ "$failed" = 1 ]; then
    echo "fuzz: a target found something; its input is in $out/<target>/ (replay: FERRY_FUZZ_TARGET=<target> $binary FILE)" >&2
    exit 1
fi
