# code-lib.sh - what the graders of the code labs (grade-2, grade-4, grade-6) share: build the
# student's server, run the model's integration battery on it, run it under strace while
# loadgen drives it. Source it after grade-lib.sh, then call code_begin. Needs bash, jq, strace.
#
#   code_begin LAB DIR     read tests/labs/labLAB/manifest (model, source, libs), find the
#                          suite's own build (IOMODELS_BUILD, default REPO/build: check_iomodels,
#                          loadgen), start the grading run (grade_begin). Sets MODEL, SRC (the
#                          student's DIR/<file>.c), OUT (DIR/build), TOOLS (the suite's build).
#   code_build NAME MAX    build DIR/<file>.c against common/ with the Makefile's flags into
#                          DIR/build/MODEL (tests/labs/lab.mk); records check NAME. Status 0 if
#                          it built. The compiler's output: DIR/build/build.log.
#   code_battery           run the battery, tests/test_servers.c's "every model" cases for MODEL
#                          on DIR/build/MODEL (IOMODELS_SERVER_DIR), and set BATTERY_TOTAL,
#                          BATTERY_PASSED (names), BATTERY_FAILED (names), BATTERY_WHY[name]
#                          (Check's message), BATTERY_SKIPPED (the server's exit-77 reason).
#                          Check's output: DIR/build/battery.log.
#   battery_check NAME MAX [CASES...]
#                          record check NAME: MAX * (cases passed / cases run), rounded down,
#                          over CASES (default: every case), listing the failed ones.
#   code_traced_run OPTION...
#                          start DIR/build/MODEL under strace -f OPTION... (-c: the counts
#                          only; -C: the trace too; -y: descriptors named), drive it with loadgen (4 connections, 64-byte
#                          echoes, exactly $LOADGEN_REQUESTS measured replies, no warm-up), stop
#                          it with SIGTERM. Sets SERVED (requests loadgen counted, 0 if the run
#                          failed), RUN_PROBLEM (why the run failed, or empty), CALLS[syscall]
#                          (strace's counts) and TRACE (the trace file). Files: DIR/build/traced.*
#   run_reason             why the traced run failed, as a check's reason
#   calls NAME...          print the summed strace counts of these system calls
#   server_start_plain / server_stop_plain
#                          start DIR/build/MODEL -p 0 without strace: sets SERVER_PID, PORT;
#                          status 1 (and RUN_PROBLEM) if it did not listen within 10 s.
#   code_details           after grade_end: the battery's failure messages, for the student.

set -u
LOADGEN_REQUESTS=2000
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

code_begin()
{
    local lab=$1 dir=$2
    [ -d "$dir" ] || grade_fatal "$dir: not a directory (make lab-start LAB=$lab DIR=$dir writes the starter)"
    dir=$(cd "$dir" && pwd)
    case $dir in *[[:space:]]*) grade_fatal "$dir: a directory without spaces in its path, please (make cannot build in it)" ;; esac
    local manifest=$REPO/tests/labs/lab$lab/manifest
    [ -f "$manifest" ] || grade_fatal "no $manifest"
    MODEL=$(awk '$1 == "model" { print $2; exit }' "$manifest")
    local file
    file=$(awk '$1 == "source" { print $3; exit }' "$manifest")
    LIBS=$(awk '$1 == "libs" { $1 = ""; print; exit }' "$manifest")
    if [ -z "$MODEL" ] || [ -z "$file" ]; then grade_fatal "$manifest: no model or source line"; fi
    SRC=$dir/$file
    OUT=$dir/build
    TOOLS=${IOMODELS_BUILD:-$REPO/build}
    local t
    for t in check_iomodels loadgen; do
        [ -x "$TOOLS/$t" ] || grade_fatal "no $TOOLS/$t: build the suite first (make all tests; make grade does it)"
    done
    grep -q IOMODELS_SERVER_DIR "$TOOLS/check_iomodels" ||
        grade_fatal "$TOOLS/check_iomodels predates IOMODELS_SERVER_DIR (tests/helpers.c): run make tests"
    command -v strace >/dev/null 2>&1 || grade_fatal "strace is needed (make deps installs it)"
    command -v make >/dev/null 2>&1 || grade_fatal "make is needed"
    mkdir -p "$OUT" || grade_fatal "cannot make $OUT"
    # The build and the battery get the environment of a plain shell: no make job server or
    # variables of an outer make (make grade, make check), no Check options of an outer run.
    unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES CK_RUN_SUITE CK_RUN_CASE CK_INCLUDE_TAGS \
        CK_EXCLUDE_TAGS CK_LOG_FILE_NAME CK_XML_LOG_FILE_NAME CK_TAP_LOG_FILE_NAME CK_VERBOSITY \
        CK_FORK CK_DEFAULT_TIMEOUT CK_TIMEOUT_MULTIPLIER IOMODELS_TEST_MODELS IOMODELS_SERVER_DIR
    BUILT=0
    grade_begin "$lab" "$dir"
}

code_build()
{
    local name=$1 max=$2
    if [ ! -f "$SRC" ]; then
        fail "$name" "$max" "no $(basename "$SRC") in $GRADE_DIR"
        return 1
    fi
    rm -f "$OUT/$MODEL"
    if make -s -C "$REPO" -f Makefile -f tests/labs/lab.mk BUILD="$OUT" LAB_MODEL="$MODEL" \
        LAB_SRC="$SRC" LAB_LIBS="$LIBS" lab-server >"$OUT/build.log" 2>&1 && [ -x "$OUT/$MODEL" ]; then
        pass "$name" "$max"
        BUILT=1
        return 0
    fi
    local first
    first=$(grep -m1 -E 'error|undefined reference' "$OUT/build.log" | cut -c1-160)
    fail "$name" "$max" "${first:-the build failed} (all of it: build/build.log)"
    return 1
}

declare -A BATTERY_WHY=()
BATTERY_TOTAL=0 BATTERY_PASSED="" BATTERY_FAILED="" BATTERY_SKIPPED=""

code_battery()
{
    BATTERY_WHY=() BATTERY_TOTAL=0 BATTERY_PASSED="" BATTERY_FAILED="" BATTERY_SKIPPED=""
    [ "$BUILT" = 1 ] || return 1
    local log=$OUT/battery.log cklog=$OUT/battery.check.log
    rm -f "$cklog"
    # TMPDIR: a scratch directory for what the tests leave behind when a case fails (a server's
    # log, which tests/helpers.c keeps under TMPDIR, else /tmp), removed afterwards
    local scratch
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/grade-battery.XXXXXX") || grade_fatal "mktemp -d failed"
    (cd "$OUT" && env IOMODELS_SERVER_DIR="$OUT" IOMODELS_TEST_MODELS="$MODEL" \
        CK_RUN_SUITE=servers CK_RUN_CASE="every model" CK_LOG_FILE_NAME="$cklog" \
        TMPDIR="$scratch" timeout 900 "$TOOLS/check_iomodels") >"$log" 2>&1
    rm -rf "$scratch"
    BATTERY_SKIPPED=$(sed -n "s/^SKIPPED $MODEL: //p" "$log" | head -1)
    [ -f "$cklog" ] || return 1
    local name result why
    # Check's log: FILE:LINE:RESULT:CASE:TEST:INDEX: MESSAGE, RESULT P(assed), F(ailed), E(rror)
    while IFS=: read -r _ _ result _ name _ why; do
        case $result in
        P) BATTERY_PASSED="$BATTERY_PASSED $name" ;;
        F | E)
            BATTERY_FAILED="$BATTERY_FAILED $name"
            BATTERY_WHY[$name]=${why# }
            ;;
        *) continue ;;
        esac
        BATTERY_TOTAL=$((BATTERY_TOTAL + 1))
    done < <(grep -E '^[^:]*:[0-9]+:[PFE]:every model:' "$cklog")
    return 0
}

battery_check()
{
    local name=$1 max=$2
    shift 2
    if [ "$BUILT" != 1 ]; then
        fail "$name" "$max" "not built"
        return
    fi
    if [ -n "$BATTERY_SKIPPED" ]; then
        fail "$name" "$max" "the server exited 77 (\"$BATTERY_SKIPPED\"), yet io_uring works here"
        return
    fi
    local picked=" $* " n=0 ok=0 failed="" t
    for t in $BATTERY_PASSED $BATTERY_FAILED; do
        if [ $# -gt 0 ] && [[ $picked != *" $t "* ]]; then continue; fi
        n=$((n + 1))
        if [[ " $BATTERY_PASSED " == *" $t "* ]]; then ok=$((ok + 1)); else failed="$failed, $t"; fi
    done
    if [ "$n" = 0 ]; then
        fail "$name" "$max" "the battery did not run (see build/battery.log)"
    elif [ "$ok" = "$n" ]; then
        if [ "$n" = 1 ]; then pass "$name" "$max" "passes"; else pass "$name" "$max" "all $n cases pass"; fi
    else
        failed=${failed#, }
        local count=$((n - ok))
        if [ $count -gt 4 ]; then # the first four; code_details lists them all
            failed="$(cut -d, -f1-4 <<<"$failed") and $((count - 4)) more"
        fi
        check "$name" "$max" $((max * ok / n)) "$ok of $n cases pass; failed: $failed (see below)"
    fi
}

# Wait up to 10 s for "listening on 127.0.0.1:PORT" in file $1 while process $2 lives: sets PORT.
wait_listening()
{
    local i
    PORT=""
    for ((i = 0; i < 1000; i++)); do
        PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$1" 2>/dev/null | head -1)
        [ -n "$PORT" ] && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.01
    done
    return 1
}

# Wait up to $2 seconds for process $1 (our child) to exit; kill it if it has not.
wait_gone()
{
    local i
    for ((i = 0; i < $2 * 100; i++)); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.01
    done
    kill -0 "$1" 2>/dev/null && kill -KILL "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}

server_start_plain()
{
    RUN_PROBLEM=""
    "$OUT/$MODEL" -p 0 >"$OUT/plain.stdout" 2>"$OUT/plain.stderr" &
    SERVER_PID=$!
    if ! wait_listening "$OUT/plain.stdout" "$SERVER_PID"; then
        RUN_PROBLEM="the server did not listen: $(tail -c 200 "$OUT/plain.stderr" | tr '\n' ' ')"
        wait_gone "$SERVER_PID" 1
        return 1
    fi
}

server_stop_plain()
{
    kill -TERM "$SERVER_PID" 2>/dev/null
    wait_gone "$SERVER_PID" 10
}

declare -A CALLS=()
SERVED=0 RUN_PROBLEM="" TRACE=""

code_traced_run()
{
    local base=$OUT/traced
    CALLS=() SERVED=0 RUN_PROBLEM="" TRACE=$base.strace
    [ "$BUILT" = 1 ] || { RUN_PROBLEM="not built"; return 1; }
    rm -f "$base".*
    strace -f "$@" -o "$TRACE" "$OUT/$MODEL" -p 0 >"$base.stdout" 2>"$base.stderr" &
    local spid=$! pid="" i
    if wait_listening "$base.stdout" "$spid"; then
        for ((i = 0; i < 100; i++)); do # the server: strace's child
            pid=$(awk '{ print $1 }' "/proc/$spid/task/$spid/children" 2>/dev/null)
            [ -n "$pid" ] && break
            sleep 0.01
        done
        timeout 60 "$TOOLS/loadgen" -p "$PORT" -c 4 -s 64 --warmup 0 -n "$LOADGEN_REQUESTS" \
            --timeout 5 -q --json "$base.json" >"$base.loadgen" 2>&1
        local rc=$?
        if [ $rc = 0 ] && [ -f "$base.json" ]; then
            local errors
            SERVED=$(jq -r '.requests // 0' "$base.json")
            errors=$(jq -r '.errors.total // 0' "$base.json")
            if [ "$errors" != 0 ] || [ "$SERVED" -lt "$LOADGEN_REQUESTS" ]; then
                RUN_PROBLEM="loadgen: $SERVED of $LOADGEN_REQUESTS replies, $errors errors"
                SERVED=0
            fi
        else
            RUN_PROBLEM="loadgen failed (status $rc): $(grep -v '^ ' "$base.loadgen" | tail -1)"
        fi
        if [ -n "$RUN_PROBLEM" ] && ! kill -0 "$pid" 2>/dev/null; then
            RUN_PROBLEM="the server exited: $(tail -n 1 "$base.stderr" | cut -c1-120) ($RUN_PROBLEM)"
        fi
        [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
    else
        RUN_PROBLEM="the server did not listen: $(tail -c 200 "$base.stderr" | tr '\n' ' ')"
    fi
    wait_gone "$spid" 10
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
    # strace's summary: "% time seconds usecs/call calls [errors] syscall" rows, then "total"
    local calls name
    while read -r calls name; do
        CALLS[$name]=$calls
    done < <(awk '/^% time/ { s = 1; next } s && /^-/ { next }
                  s && NF >= 5 && $NF != "total" { print $4, $NF }' "$TRACE" 2>/dev/null)
    [ -z "$RUN_PROBLEM" ]
}

# Why the traced run failed, for a check's reason.
run_reason()
{
    if [ "$RUN_PROBLEM" = "not built" ]; then echo "not built"; else echo "the run under strace failed: $RUN_PROBLEM"; fi
}

calls()
{
    local n=0 c
    for c in "$@"; do n=$((n + ${CALLS[$c]:-0})); done
    echo "$n"
}

code_details()
{
    local t
    [ -n "$BATTERY_FAILED" ] || return 0
    echo
    echo "Battery cases that failed (tests/test_servers.c; all of it: $OUT/battery.log):"
    for t in $BATTERY_FAILED; do
        echo "  $t: ${BATTERY_WHY[$t]}"
    done
}
