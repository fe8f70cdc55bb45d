# grade-lib.sh - shared by the lab graders (tests/labs/grade-N): record checks, print the
# table, write grade.json. Source it from bash; needs jq.
#
#   . "$(dirname "$0")/grade-lib.sh"
#   grade_begin LAB DIR          start a grading run: remembers the lab number and the
#                                student's directory, forgets earlier checks
#   check NAME MAX POINTS REASON record one check. NAME: a short label (spaces allowed).
#                                MAX, POINTS: non-negative numbers (integers or decimals),
#                                POINTS is clamped to 0..MAX. passed = (POINTS == MAX).
#                                REASON: one line; "ok" (or empty) when passed, else why not.
#   pass NAME MAX [REASON]       shorthand: check NAME MAX MAX "${REASON:-ok}"
#   fail NAME MAX REASON         shorthand: check NAME MAX 0 REASON
#   grade_end                    print the table and the total on stdout, write the JSON
#                                (below); returns 0. Call it once, last.
#   grade_fatal MESSAGE          grading itself cannot run (missing tool, DIR not a
#                                directory...): message on stderr, exit 2. Never for a
#                                student's mistake: that is a failed check.
#
# grade-lib sets no traps and no shell options (set -e etc.): the caller keeps its own.
#
# Output (stdout), one row per check in the order recorded, then the total:
#
#   lab 1: /tmp/alice/lab1
#   check                               | points |  max | result
#   ------------------------------------+--------+------+------------------------------
#   blocking-think.json loadgen         |      1 |    1 | ok
#   epoll-think.json model              |      0 |    1 | the server said model "poll" in STATS, expected "epoll"
#   ------------------------------------+--------+------+------------------------------
#   total                               |      1 |    2 |
#   grade.json: /tmp/alice/lab1/grade.json
#
# grade.json goes to $GRADE_JSON if set, else DIR/grade.json:
#   {"lab": 1, "total": 1, "max": 2,
#    "checks": [{"name": "...", "points": 1, "max": 1, "passed": true, "reason": "ok"}, ...]}
#
# Helpers for graders (they record no check themselves):
#   is_number X                  status 0 if X is a decimal number (optional sign, point)
#   num_eq A B [TOL]             status 0 if numbers A and B differ by at most TOL (default 0.5)
#   fmt_num X                    print X with at most 3 decimals, trailing zeros dropped
#   close_enough GIVEN EXACT [REL]
#                                status 0 if GIVEN (a figure a student wrote) is EXACT rounded
#                                to GIVEN's own number of decimals (half a unit of its last
#                                digit, plus 0.001 for the JSON's own rounding), or within
#                                REL (a fraction, default 0.001) of EXACT
#
# Worksheet helpers, for answers.md files (tests/labs/labN/answers.md is the template):
#   ws_answer FILE TEMPLATE HEADING
#                                print the student's text under the heading that starts with
#                                HEADING (e.g. "### P1."), up to the next heading: blank lines,
#                                HTML comments and lines found verbatim in TEMPLATE left out
#   ws_words TEXT                print how many words TEXT has
#   ws_cell FILE ROW COL         print cell COL (1 = the first column) of the table row whose
#                                first cell is ROW, trimmed; nothing if there is no such row
#   ws_number TEXT               print TEXT as a plain number (thousands commas, a unit such as
#                                us/µs/x/× and spaces removed), or nothing if it is not one
#   answer_check NAME SHEET TEMPLATE HEADING [MINWORDS]
#                                record a 1-point check NAME: ws_answer has at least MINWORDS
#                                words (default 3)
#
# Measurement-lab helpers, for loadgen JSON files:
#   json_checks FILE MODEL FILTER WANT HOWTO
#                                record four 1-point checks, "NAME.json loadgen", "... config",
#                                "... model", "... no errors": FILE exists and is loadgen's
#                                JSON; jq FILTER (e.g. '.config.connections == 1') is true
#                                (WANT says in words what it asks for); .model is MODEL; no
#                                error, not interrupted, requests > 0. HOWTO is the command to
#                                show when FILE is missing. Status 0 if FILE is loadgen's JSON.
#   row_check NAME SHEET ROW FILE REL SPEC...
#                                record a 1-point check NAME: in SHEET's table row ROW, every
#                                SPEC "COL|LABEL|JQ" holds: cell COL is close_enough (with REL)
#                                to the value jq expression JQ computes from FILE (a JSON file);
#                                where JQ gives null the cell must say n/a
#   cell_check NAME SHEET ROW COL EXACT REL LABEL
#                                record a 1-point check NAME: cell COL of row ROW is
#                                close_enough (REL) to the number EXACT (computed by the
#                                grader); LABEL names the figure in the reason. An EXACT that is
#                                empty means the grader could not compute it (a JSON missing).

GRADE_LAB=""
GRADE_DIR=""
GRADE_ROWS=""      # temp file: one JSON object per line

grade_begin()
{
    command -v jq >/dev/null 2>&1 || grade_fatal "jq is needed (apt-get install jq, or make deps)"
    GRADE_LAB=$1
    GRADE_DIR=$2
    [ -d "$GRADE_DIR" ] || grade_fatal "$GRADE_DIR: not a directory"
    [ -n "$GRADE_ROWS" ] && rm -f "$GRADE_ROWS"
    GRADE_ROWS=$(mktemp "${TMPDIR:-/tmp}/grade-rows.XXXXXX") || grade_fatal "mktemp failed"
}

grade_fatal()
{
    echo "grade: $*" >&2
    [ -n "$GRADE_ROWS" ] && rm -f "$GRADE_ROWS"
    exit 2
}

is_number()
{
    [[ $1 =~ ^[-+]?([0-9]+([.][0-9]*)?|[.][0-9]+)$ ]]
}

num_eq()
{
    is_number "$1" && is_number "$2" || return 1
    awk -v a="$1" -v b="$2" -v t="${3:-0.5}" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= t + 1e-9) }'
}

check()
{
    local name=$1 max=$2 points=$3 reason=${4:-}
    [ -n "$GRADE_ROWS" ] || grade_fatal "check before grade_begin"
    is_number "$max" || grade_fatal "check $name: max '$max' is not a number"
    is_number "$points" || grade_fatal "check $name: points '$points' is not a number"
    points=$(awk -v p="$points" -v m="$max" 'BEGIN { if (p < 0) p = 0; if (p > m) p = m; print p + 0 }')
    max=$(awk -v m="$max" 'BEGIN { print m + 0 }')
    local passed=false
    awk -v p="$points" -v m="$max" 'BEGIN { exit !(p == m) }' && passed=true
    [ -z "$reason" ] && $passed && reason=ok
    reason=${reason//$'\n'/ }
    jq -cn --arg name "$name" --argjson points "$points" --argjson max "$max" \
        --argjson passed "$passed" --arg reason "$reason" \
        '{name: $name, points: $points, max: $max, passed: $passed, reason: $reason}' >>"$GRADE_ROWS"
}

pass() { check "$1" "$2" "$2" "${3:-ok}"; }
fail() { check "$1" "$2" 0 "$3"; }

grade_end()
{
    [ -n "$GRADE_ROWS" ] || grade_fatal "grade_end before grade_begin"
    local out=${GRADE_JSON:-$GRADE_DIR/grade.json}
    local json
    json=$(jq -s --argjson lab "$GRADE_LAB" \
        '{lab: $lab, total: (map(.points) | add // 0), max: (map(.max) | add // 0), checks: .}' \
        "$GRADE_ROWS") || grade_fatal "could not build the JSON"
    printf '%s\n' "$json" >"$out" || grade_fatal "cannot write $out"
    local line='------------------------------------+--------+------+------------------------------'
    echo "lab $GRADE_LAB: $GRADE_DIR"
    printf '%-35s | %6s | %4s | %s\n' check points max result
    echo "$line"
    jq -r '.checks[] | [.name, (.points | tostring), (.max | tostring), .reason] | @tsv' <<<"$json" |
        while IFS=$'\t' read -r name points max reason; do
            printf '%-35s | %6s | %4s | %s\n' "$name" "$points" "$max" "$reason"
        done
    echo "$line"
    printf '%-35s | %6s | %4s |\n' total "$(jq -r .total <<<"$json")" "$(jq -r .max <<<"$json")"
    echo "grade.json: $out"
    rm -f "$GRADE_ROWS"
    GRADE_ROWS=""
    return 0
}

fmt_num()
{
    awk -v x="$1" 'BEGIN { s = sprintf("%.3f", x); sub(/0+$/, "", s); sub(/[.]$/, "", s); print s }'
}

close_enough()
{
    local given=$1 exact=$2 rel=${3:-0.001}
    is_number "$given" && is_number "$exact" || return 1
    local decimals=0 whole=${given%%.*}
    [[ $given == *.* ]] && decimals=$((${#given} - ${#whole} - 1))
    awk -v g="$given" -v e="$exact" -v d="$decimals" -v r="$rel" 'BEGIN {
        diff = g - e; if (diff < 0) diff = -diff
        half = 0.5; for (i = 0; i < d; i++) half /= 10
        ae = e < 0 ? -e : e
        exit !(diff <= half + 0.001 + 1e-9 || diff <= r * ae)
    }'
}

# The text of one answer: what the student added under HEADING.
ws_answer()
{
    local file=$1 template=$2 heading=$3
    [ -f "$file" ] || return 0
    awk -v heading="$heading" -v template="$template" '
        function trim(x) { gsub(/^[ \t\r]+|[ \t\r]+$/, "", x); return x }
        BEGIN {
            while ((getline line < template) > 0) { line = trim(line); if (line != "") known[line] = 1 }
        }
        {
            line = $0
            # HTML comments, also over several lines
            out = ""
            while (line != "") {
                if (incomment) {
                    e = index(line, "-->")
                    if (e == 0) { line = ""; break }
                    line = substr(line, e + 3); incomment = 0
                } else {
                    b = index(line, "<!--")
                    if (b == 0) { out = out line; line = ""; break }
                    out = out substr(line, 1, b - 1); line = substr(line, b + 4); incomment = 1
                }
            }
            t = trim(out)
            if (t ~ /^#/) { inside = (index(t, heading) == 1); next }
            if (inside && t != "" && !(t in known)) print t
        }' "$file"
}

ws_words()
{
    printf '%s\n' "$1" | wc -w | tr -d ' '
}

ws_cell()
{
    local file=$1 row=$2 col=$3
    [ -f "$file" ] || return 0
    awk -F'|' -v row="$row" -v col="$col" '
        function trim(x) { gsub(/^[ \t\r`*]+|[ \t\r`*]+$/, "", x); return x }
        /^[ \t]*\|/ {
            if (trim($2) == row) { print trim($(col + 1)); exit }
        }' "$file"
}

ws_number()
{
    local t=$1
    t=${t//$'\r'/}
    t=$(sed -E 's/(µs|us|ms|×|x|X|%)$//; s/[[:space:]]//g' <<<"$t")
    [[ $t =~ ^[0-9]{1,3}(,[0-9]{3})+([.][0-9]*)?$ ]] && t=${t//,/}
    t=$(sed -E 's/(µs|us|×|x|X)$//' <<<"$t")
    is_number "$t" && printf '%s\n' "$t"
    return 0
}

json_checks()
{
    local file=$1 model=$2 filter=$3 want=$4 howto=$5
    local base
    base=$(basename "$file")
    if [ ! -f "$file" ]; then
        fail "$base loadgen" 1 "missing; run: $howto"
        fail "$base config" 1 "no file"
        fail "$base model" 1 "no file"
        fail "$base no errors" 1 "no file"
        return 1
    fi
    if ! jq -e '.tool == "loadgen"' "$file" >/dev/null 2>&1; then
        fail "$base loadgen" 1 "not loadgen's JSON (written with loadgen --json?)"
        fail "$base config" 1 "not loadgen's JSON"
        fail "$base model" 1 "not loadgen's JSON"
        fail "$base no errors" 1 "not loadgen's JSON"
        return 1
    fi
    pass "$base loadgen" 1
    if jq -e "$filter" "$file" >/dev/null 2>&1; then
        pass "$base config" 1
    else
        fail "$base config" 1 "expected $want; the run had $(jq -c '.config | {connections, think_ms, idle, mode}' "$file")"
    fi
    local got
    got=$(jq -r '.model' "$file")
    if [ "$got" = "$model" ]; then
        pass "$base model" 1
    else
        fail "$base model" 1 "the server said model \"$got\" in STATS, expected \"$model\""
    fi
    if jq -e '.errors.total == 0 and .interrupted == false and .requests > 0' "$file" >/dev/null; then
        pass "$base no errors" 1
    else
        fail "$base no errors" 1 "$(jq -r '"errors \(.errors.total), interrupted \(.interrupted), requests \(.requests)"' "$file")"
    fi
    return 0
}

answer_check()
{
    local name=$1 sheet=$2 template=$3 heading=$4 min=${5:-3}
    if [ ! -f "$sheet" ]; then
        fail "$name" 1 "no $(basename "$sheet")"
        return
    fi
    local text words
    text=$(ws_answer "$sheet" "$template" "$heading")
    words=$(ws_words "$text")
    if [ "$words" -ge "$min" ]; then
        pass "$name" 1 "ok ($words words)"
    elif [ "$words" -eq 0 ]; then
        fail "$name" 1 "no answer under \"$heading\""
    else
        fail "$name" 1 "answer under \"$heading\" has $words words; at least $min expected"
    fi
}

row_check()
{
    local name=$1 sheet=$2 row=$3 file=$4 rel=$5
    shift 5
    if [ ! -f "$sheet" ]; then
        fail "$name" 1 "no $(basename "$sheet")"
        return
    fi
    if ! jq -e '.tool == "loadgen"' "$file" >/dev/null 2>&1; then
        fail "$name" 1 "no loadgen JSON $(basename "$file") to compare with"
        return
    fi
    if [ -z "$(awk -F'|' -v row="$row" '/^[ \t]*\|/ { x = $2; gsub(/^[ \t`*]+|[ \t`*]+$/, "", x); if (x == row) print "y" }' "$sheet")" ]; then
        fail "$name" 1 "the table has no row \"$row\""
        return
    fi
    local spec col label expr cell given exact problems=""
    for spec in "$@"; do
        col=${spec%%|*}; spec=${spec#*|}
        label=${spec%%|*}; expr=${spec#*|}
        cell=$(ws_cell "$sheet" "$row" "$col")
        exact=$(jq -r "$expr" "$file" 2>/dev/null)
        if [ -z "$cell" ]; then
            problems+="${problems:+; }$label empty"
            continue
        fi
        if [ "$exact" = null ] || [ -z "$exact" ]; then
            [[ ${cell,,} == n/a || ${cell,,} == na ]] ||
                problems+="${problems:+; }$label: wrote $cell, the JSON has no value (n/a)"
            continue
        fi
        given=$(ws_number "$cell")
        if [ -z "$given" ]; then
            problems+="${problems:+; }$label: \"$cell\" is not a number"
        elif ! close_enough "$given" "$exact" "$rel"; then
            problems+="${problems:+; }$label: wrote $cell, $(basename "$file") gives $(fmt_num "$exact")"
        fi
    done
    if [ -z "$problems" ]; then
        pass "$name" 1
    else
        fail "$name" 1 "$problems"
    fi
}

cell_check()
{
    local name=$1 sheet=$2 row=$3 col=$4 exact=$5 rel=$6 label=$7
    if [ ! -f "$sheet" ]; then
        fail "$name" 1 "no $(basename "$sheet")"
        return
    fi
    if [ -z "$exact" ] || ! is_number "$exact"; then
        fail "$name" 1 "cannot check $label: the files it is computed from are missing or incomplete"
        return
    fi
    local cell given
    cell=$(ws_cell "$sheet" "$row" "$col")
    given=$(ws_number "$cell")
    if [ -z "$cell" ]; then
        fail "$name" 1 "$label: row \"$row\" is empty or missing"
    elif [ -z "$given" ]; then
        fail "$name" 1 "$label: \"$cell\" is not a number"
    elif close_enough "$given" "$exact" "$rel"; then
        pass "$name" 1
    else
        fail "$name" 1 "$label: wrote $cell, expected $(fmt_num "$exact") from your own files"
    fi
}
