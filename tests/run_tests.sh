#!/usr/bin/env bash
# tests/run_tests.sh - runs tbcluster's test programs and checks, keeps a tally across calls, prints the total.
#
#   tests/run_tests.sh [OPTIONS] PROGRAM...          run test programs (each prints "NAME: N passed, M failed")
#   tests/run_tests.sh [OPTIONS] -c NAME -- CMD...   run one check: a command that passes when it exits 0
#   tests/run_tests.sh [OPTIONS] --summary           print the tally and "N passed, M failed"; exit 1 on failures
#
# Options:
#   -r FILE     results file shared by several calls (default: a temporary file, summary printed at the end)
#   -s SUITE    label for this group (native, asan, aarch64, ...)
#   -w WRAPPER  command that runs each program (e.g. "qemu-aarch64 -cpu max"); split on spaces
#   -t SECONDS  per-program time limit (default 900)
#   -v          show each program's whole output (default: its summary line, and the tail of its log on failure)
#
# Programs run from the repository root (they read ../shared). Their output is kept in build/logs/SUITE/.
# Counting: a program's own "N passed, M failed" line is added to the total. A program that is missing (did not
# build), prints no such line, exits non-zero, times out or dies from a signal counts one more failure.
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root" || exit 2

results=""
suite="tests"
wrapper=""
limit=900
verbose="${VERBOSE:-0}"
check=""
summary=0
while [ $# -gt 0 ]; do
    case "$1" in
    -r) results="$2"; shift 2 ;;
    -s) suite="$2"; shift 2 ;;
    -w) wrapper="$2"; shift 2 ;;
    -t) limit="$2"; shift 2 ;;
    -v) verbose=1; shift ;;
    -c) check="$2"; shift 2 ;;
    --summary) summary=1; shift ;;
    --) shift; break ;;
    -*) echo "run_tests.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
    esac
done

own_results=0
if [ -z "$results" ]; then
    results="$(mktemp)"
    own_results=1
    trap 'rm -f "$results"' EXIT
fi
mkdir -p "$(dirname "$results")"
touch "$results"
logdir="build/logs/$suite"

# record NAME PASSED FAILED NOTE
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$suite" "$1" "$2" "$3" "$4" >>"$results"; }

SAN_RE='ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error:'
show_tail() {  # a failing log, indented: a sanitizer's report, or compiler errors, or else its last lines
    local first
    first="$(grep -anE "$SAN_RE" "$1" | head -n 1 | cut -d: -f1)"
    if [ -n "$first" ]; then
        echo "    --- $1 from line $first ---"
        tail -n "+$first" "$1" | head -n "${2:-40}" | sed 's/^/    | /'
    elif grep -qaE ': (fatal )?error:|undefined reference|\*\*\*' "$1"; then
        echo "    --- errors in $1 ---"
        grep -aE ': (fatal )?error:|undefined reference|\*\*\*' "$1" | awk '!seen[$0]++' | head -n "${2:-40}" | sed 's/^/    | /'
    else
        echo "    --- last lines of $1 ---"
        tail -n "${2:-40}" "$1" | sed 's/^/    | /'
    fi
}

print_summary() {
    local p f
    p="$(awk -F'\t' '{s += $3} END {print s + 0}' "$results")"
    f="$(awk -F'\t' '{s += $4} END {print s + 0}' "$results")"
    echo
    echo "== summary by suite (passed/failed) =="
    awk -F'\t' '{p[$1] += $3; f[$1] += $4; if (!($1 in seen)) {seen[$1] = 1; order[n++] = $1}}
        END {for (i = 0; i < n; i++) printf "  %-12s %6d passed, %d failed\n", order[i], p[order[i]], f[order[i]]}' \
        "$results"
    if [ "$f" -gt 0 ]; then
        echo "== failures =="
        awk -F'\t' '$4 > 0 {printf "  %s/%s: %s failed%s\n", $1, $2, $4, ($5 != "" ? " (" $5 ")" : "")}' "$results"
    fi
    echo "$p passed, $f failed"
    [ "$f" -eq 0 ]
}

if [ "$summary" -eq 1 ]; then
    print_summary
    exit $?
fi
mkdir -p "$logdir"

# A single check: one pass or one failure.
if [ -n "$check" ]; then
    [ $# -gt 0 ] || { echo "run_tests.sh: -c needs a command after --" >&2; exit 2; }
    log="$logdir/$(printf '%s' "$check" | tr -c 'A-Za-z0-9_.-' '_').log"
    start=$(date +%s)
    printf '%s\n' "\$ $*" >"$log"
    if [ "$verbose" -eq 1 ]; then
        timeout "$limit" "$@" </dev/null 2>&1 | tee -a "$log"
        rc=${PIPESTATUS[0]}
    else
        timeout "$limit" "$@" </dev/null >>"$log" 2>&1
        rc=$?
    fi
    secs=$(($(date +%s) - start))
    if [ "$rc" -eq 0 ]; then
        printf '  PASS  %s/%s (%ds)\n' "$suite" "$check" "$secs"
        record "$check" 1 0 ""
    else
        printf '  FAIL  %s/%s (exit %d, %ds)\n' "$suite" "$check" "$rc" "$secs"
        [ "$verbose" -eq 1 ] || show_tail "$log" 60
        record "$check" 0 1 "exit $rc"
    fi
    if [ "$own_results" -eq 1 ]; then print_summary; exit $?; fi
    exit 0
fi

# Test programs.
for prog in "$@"; do
    name="$(basename "$prog")"
    log="$logdir/$name.log"
    if [ ! -x "$prog" ]; then
        printf '  FAIL  %s/%s: not built (see the compiler errors above)\n' "$suite" "$name"
        record "$name" 0 1 "not built"
        continue
    fi
    start=$(date +%s)
    # shellcheck disable=SC2086 # the wrapper is a command with arguments
    if [ "$verbose" -eq 1 ]; then
        timeout "$limit" $wrapper "$prog" </dev/null 2>&1 | tee "$log"
        rc=${PIPESTATUS[0]}
    else
        timeout "$limit" $wrapper "$prog" </dev/null >"$log" 2>&1
        rc=$?
    fi
    secs=$(($(date +%s) - start))
    line="$(grep -aE '^[A-Za-z0-9_.-]+: [0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)"
    p=0
    f=0
    note=""
    if [ -n "$line" ]; then
        p="$(printf '%s' "$line" | sed -E 's/^[^:]*: ([0-9]+) passed, ([0-9]+) failed.*/\1/')"
        f="$(printf '%s' "$line" | sed -E 's/^[^:]*: ([0-9]+) passed, ([0-9]+) failed.*/\2/')"
    fi
    if [ "$rc" -eq 124 ]; then
        note="timed out after ${limit}s"
    elif [ "$rc" -ne 0 ] && grep -qaE "$SAN_RE" "$log"; then
        note="sanitizer report"
    elif [ "$rc" -gt 128 ]; then
        note="killed by signal $((rc - 128))"
    elif [ -z "$line" ]; then
        note="no 'N passed, M failed' line (exit $rc)"
    elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        note="exit $rc"
    fi
    # A failure the program did not count itself is one more failure.
    [ -n "$note" ] && f=$((f + 1))
    skips="$(grep -ac '^SKIP' "$log")"
    extra=""
    [ "$skips" -gt 0 ] && extra=", $skips SKIP lines"
    if [ "$f" -eq 0 ]; then
        printf '  PASS  %s/%s: %s passed (%ds%s)\n' "$suite" "$name" "$p" "$secs" "$extra"
    else
        printf '  FAIL  %s/%s: %s passed, %s failed%s (%ds)\n' "$suite" "$name" "$p" "$f" \
            "${note:+, $note}" "$secs"
        [ "$verbose" -eq 1 ] || show_tail "$log" 40
    fi
    record "$name" "$p" "$f" "$note"
done

if [ "$own_results" -eq 1 ]; then
    print_summary
    exit $?
fi
exit 0
